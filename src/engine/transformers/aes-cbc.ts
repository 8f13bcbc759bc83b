import { createCipheriv, createDecipheriv } from "node:crypto";
import { freshRandom } from "../../crypto/nonce-source.js";
import { DecryptionFailedError, MalformedCiphertextError } from "../../errors.js";
import { KeyedTransformer, type Read, type Stored, type Writer } from "./transformer.js";

const BLOCK = 16;

function cipherName(key: Uint8Array): "aes-128-cbc" | "aes-192-cbc" | "aes-256-cbc" {
  if (key.length === 16) return "aes-128-cbc";
  if (key.length === 24) return "aes-192-cbc";
  if (key.length === 32) return "aes-256-cbc";
  throw new RangeError(`AES-CBC keys are 16, 24 or 32 bytes, not ${key.length}`);
}

/** IV(16, random) ‖ AES-CBC(PKCS#7 plaintext), a whole padding block when already aligned. */
export function cbcSeal(key: Uint8Array, plaintext: Uint8Array): Uint8Array {
  const iv = freshRandom(BLOCK);
  const cipher = createCipheriv(cipherName(key), key, iv);
  return Buffer.concat([iv, cipher.update(plaintext), cipher.final()]);
}

/**
 * Opens IV ‖ ciphertext. CBC carries no MAC, so the padding check is the only thing that can
 * fail; a tampered value that happens to keep valid padding decrypts to garbage, exactly as in
 * Kubernetes. That is why `aescbc` is not recommended.
 */
export function cbcOpen(key: Uint8Array, data: Uint8Array): Uint8Array {
  if (data.length < BLOCK)
    throw new MalformedCiphertextError("the stored data was shorter than the required size");
  const body = data.subarray(BLOCK);
  if (body.length === 0 || body.length % BLOCK !== 0)
    throw new MalformedCiphertextError("the stored data is not a multiple of the block size");
  const decipher = createDecipheriv(cipherName(key), key, data.subarray(0, BLOCK));
  decipher.setAutoPadding(false);
  const padded = Buffer.concat([decipher.update(body), decipher.final()]);
  const padding = padded[padded.length - 1] ?? 0;
  const size = padded.length - padding;
  // Kubernetes accepts any padding length up to the whole plaintext, so reading does too.
  let valid = padding >= 1 && padding <= padded.length;
  for (let i = size; valid && i < padded.length; i++) valid = padded[i] === padding;
  if (!valid) {
    padded.fill(0);
    throw new DecryptionFailedError();
  }
  return padded.subarray(0, size);
}

/** Kubernetes' `aescbc` provider key: confidentiality only, the authenticated data is ignored. */
export class AesCbcTransformer extends KeyedTransformer {
  constructor(key: Uint8Array, writer: Writer) {
    cipherName(key);
    super(key, writer);
  }

  override toStorageSync(plaintext: Uint8Array): Stored {
    return { data: cbcSeal(this.key(), plaintext), writer: this.currentWriter() };
  }

  override fromStorageSync(data: Uint8Array): Read {
    return { plaintext: cbcOpen(this.key(), data), stale: false, writer: this.currentWriter() };
  }
}
