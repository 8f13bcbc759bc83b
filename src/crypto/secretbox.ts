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
    // libsodium only throws here for a failed MAC check; the caller turns it into the one
    // generic decryption error.
    return undefined;
  }
}
