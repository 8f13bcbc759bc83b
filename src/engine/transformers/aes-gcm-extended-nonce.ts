import { createHmac } from "node:crypto";
import { freshRandom } from "../../crypto/nonce-source.js";
import { MalformedCiphertextError } from "../../errors.js";
import { GCM_NONCE_BYTES, GCM_TAG_BYTES, gcmOpen, gcmSeal } from "./aes-gcm.js";
import { KeyedTransformer, type Read, type Stored, type Writer } from "./transformer.js";

/** Seed (minimum) and per-write info sizes of Kubernetes' HKDF extended-nonce mode. */
export const SEED_BYTES = 32;
const INFO_BYTES = 32;

/**
 * HKDF-Expand (RFC 5869 §2.3) with SHA-256 and L = 32: one block, T(1) = HMAC(PRK, info ‖ 1).
 * Kubernetes uses the seed directly as the PRK, with no Extract step and no salt.
 */
export function hkdfExpandKey(seed: Uint8Array, info: Uint8Array): Buffer {
  return createHmac("sha256", seed).update(info).update(Buffer.of(1)).digest();
}

/**
 * KMS v2 seed mode: every write draws a random 32-byte info, derives a one-use AES-256 key from
 * the seed, and stores info(32) ‖ nonce(12) ‖ ciphertext ‖ tag(16).
 */
export class ExtendedNonceGcmTransformer extends KeyedTransformer {
  constructor(seed: Uint8Array, writer: Writer) {
    if (seed.length < SEED_BYTES)
      throw new RangeError(`the seed must be at least ${SEED_BYTES} bytes, not ${seed.length}`);
    super(seed, writer);
  }

  override toStorageSync(plaintext: Uint8Array, authenticatedData: Uint8Array): Stored {
    const info = freshRandom(INFO_BYTES);
    const key = hkdfExpandKey(this.key(), info);
    try {
      return {
        data: Buffer.concat([info, gcmSeal(key, plaintext, authenticatedData)]),
        writer: this.currentWriter(),
      };
    } finally {
      key.fill(0);
    }
  }

  override fromStorageSync(data: Uint8Array, authenticatedData: Uint8Array): Read {
    if (data.length < INFO_BYTES + GCM_NONCE_BYTES + GCM_TAG_BYTES)
      throw new MalformedCiphertextError("the stored data was shorter than the required size");
    const key = hkdfExpandKey(this.key(), data.subarray(0, INFO_BYTES));
    try {
      return {
        plaintext: gcmOpen(key, data.subarray(INFO_BYTES), authenticatedData),
        stale: false,
        writer: this.currentWriter(),
      };
    } finally {
      key.fill(0);
    }
  }
}
