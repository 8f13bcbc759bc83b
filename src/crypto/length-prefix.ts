import { MalformedCiphertextError } from "../errors.js";

const MAX_LENGTH = 0xffff;

/** `lp(x)` of SPEC.md §2: 2-byte big-endian length of the UTF-8 bytes of x, then the bytes. */
export function lengthPrefixed(text: string): Buffer {
  const out = Buffer.allocUnsafe(2 + Buffer.byteLength(text));
  writeLengthPrefixed(out, 0, text);
  return out;
}

/**
 * Writes `lp(text)` into `out` at `offset`, which must have room for it; returns where it ends.
 * Refuses text too long for the 2-byte prefix.
 */
export function writeLengthPrefixed(out: Buffer, offset: number, text: string): number {
  const length = Buffer.byteLength(text);
  if (length > MAX_LENGTH) {
    throw new RangeError(`value of ${length} bytes does not fit a 2-byte length prefix`);
  }
  if (out.length < offset + 2 + length)
    throw new RangeError("no room for the length-prefixed value");
  out.writeUInt16BE(length, offset);
  out.write(text, offset + 2, length, "utf8");
  return offset + 2 + length;
}

/** Reads one `lp(x)` at `offset`; returns the text and the offset just past it. */
export function readLengthPrefixed(
  bytes: Uint8Array,
  offset: number,
): { text: string; next: number } {
  if (bytes.length < offset + 2) {
    throw new MalformedCiphertextError("truncated length prefix");
  }
  const length = ((bytes[offset] as number) << 8) | (bytes[offset + 1] as number);
  const next = offset + 2 + length;
  if (bytes.length < next) {
    throw new MalformedCiphertextError("length prefix runs past the end");
  }
  const text = Buffer.from(bytes.buffer, bytes.byteOffset + offset + 2, length).toString("utf8");
  return { text, next };
}
