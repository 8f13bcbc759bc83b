/** Overwrites key material in place so a dropped key does not linger in the heap (SPEC.md §2). */
export function wipe(...buffers: (Uint8Array | undefined)[]): void {
  for (const buffer of buffers) buffer?.fill(0);
}
