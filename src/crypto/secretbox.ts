import sodium from "libsodium-wrappers";

/** XSalsa20-Poly1305 sizes (libsodium `crypto_secretbox_*`). */
export const SECRETBOX_NONCE_BYTES = 24;
export const SECRETBOX_MAC_BYTES = 16;

let ready = false;

/** libsodium compiles its WebAssembly lazily; call once before any seal or open. */
export async function loadSecretbox(): Promise<void> {
  await sodium.ready;
  ready = true;
}

function assertReady(): void {
  if (!ready) throw new Error("loadSecretbox() must complete before sealing or opening");
}

/** crypto_secretbox_easy: returns MAC || ciphertext. */
export function secretboxSeal(
  plaintext: Uint8Array,
  nonce: Uint8Array,
  key: Uint8Array,
): Uint8Array {
  assertReady();
  return sodium.crypto_secretbox_easy(plaintext, nonce, key);
}

/** crypto_secretbox_open_easy: returns the plaintext, or undefined when authentication fails. */
export function secretboxOpen(
  boxed: Uint8Array,
  nonce: Uint8Array,
  key: Uint8Array,
): Uint8Array | undefined {
  assertReady();
  try {
    return sodium.crypto_secretbox_open_easy(boxed, nonce, key);
  } catch {
    // libsodium throws for a failed MAC and for wrong sizes; open() checks sizes first, so in
    // practice this is the MAC failure, which the caller turns into the one generic error.
    return undefined;
  }
}
