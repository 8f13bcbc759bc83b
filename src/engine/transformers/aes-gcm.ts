import { createCipheriv, createDecipheriv } from "node:crypto";
import { freshRandom } from "../../crypto/nonce-source.js";
import { DecryptionFailedError, MalformedCiphertextError } from "../../errors.js";
import { KeyedTransformer, type Read, type Stored, type Writer } from "./transformer.js";

// Kubernetes fixes the GCM nonce at 12 bytes ("all data in etcd will be broken if this ever
// changes") and uses the standard 16-byte tag.
export const GCM_NONCE_BYTES = 12;
export const GCM_TAG_BYTES = 16;

function cipherName(key: Uint8Array): "aes-128-gcm" | "aes-192-gcm" | "aes-256-gcm" {
  switch (key.length) {
    case 16:
      return "aes-128-gcm";
    case 24:
      return "aes-192-gcm";
    case 32:
      return "aes-256-gcm";
    default:
      throw new RangeError(`AES-GCM keys are 16, 24 or 32 bytes, not ${key.length}`);
  }
}

/** nonce(12, random) ‖ ciphertext ‖ tag(16): the layout of every Kubernetes GCM value. */
export function gcmSeal(key: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Uint8Array {
  const nonce = freshRandom(GCM_NONCE_BYTES);
  const cipher = createCipheriv(cipherName(key), key, nonce, { authTagLength: GCM_TAG_BYTES });
  cipher.setAAD(aad);
  const body = cipher.update(plaintext);
  cipher.final();
  return Buffer.concat([nonce, body, cipher.getAuthTag()]);
}

/** Opens nonce ‖ ciphertext ‖ tag; any authentication failure is the one generic error. */
export function gcmOpen(key: Uint8Array, data: Uint8Array, aad: Uint8Array): Uint8Array {
  if (data.length < GCM_NONCE_BYTES + GCM_TAG_BYTES)
    throw new MalformedCiphertextError("the stored data was shorter than the required size");
  const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const decipher = createDecipheriv(cipherName(key), key, bytes.subarray(0, GCM_NONCE_BYTES), {
    authTagLength: GCM_TAG_BYTES,
  });
  decipher.setAAD(aad);
  decipher.setAuthTag(bytes.subarray(bytes.length - GCM_TAG_BYTES));
  const body = decipher.update(bytes.subarray(GCM_NONCE_BYTES, bytes.length - GCM_TAG_BYTES));
  try {
    decipher.final();
  } catch {
    body.fill(0);
    throw new DecryptionFailedError();
  }
  return body;
}

/** Kubernetes' `aesgcm` provider key, and the kms v2 legacy AES_GCM_KEY mode on read. */
export class AesGcmTransformer extends KeyedTransformer {
  constructor(key: Uint8Array, writer: Writer) {
    cipherName(key);
    super(key, writer);
  }

  override toStorageSync(plaintext: Uint8Array, authenticatedData: Uint8Array): Stored {
    return {
      data: gcmSeal(this.key(), plaintext, authenticatedData),
      writer: this.currentWriter(),
    };
  }

  override fromStorageSync(data: Uint8Array, authenticatedData: Uint8Array): Read {
    return {
      plaintext: gcmOpen(this.key(), data, authenticatedData),
      stale: false,
      writer: this.currentWriter(),
    };
  }
}
