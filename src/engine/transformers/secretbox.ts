import { freshNonce } from "../../crypto/nonce-source.js";
import {
  pooledBytes,
  SECRETBOX_MAC_BYTES,
  SECRETBOX_NONCE_BYTES,
  secretboxOpen,
  secretboxSealInto,
} from "../../crypto/secretbox.js";
import { DecryptionFailedError, MalformedCiphertextError } from "../../errors.js";
import { KeyedTransformer, type Read, type Stored, type Writer } from "./transformer.js";

const SECRETBOX_KEY_BYTES = 32;

/**
 * Kubernetes' `secretbox` provider key: nonce(24, random) ‖ NaCl secretbox (tag ‖ ciphertext),
 * which is libsodium's crypto_secretbox_easy layout. Like Kubernetes it ignores the
 * authenticated data: a value copied to another key still opens. Call loadSecretbox() first.
 */
export class SecretboxTransformer extends KeyedTransformer {
  constructor(key: Uint8Array, writer: Writer) {
    if (key.length !== SECRETBOX_KEY_BYTES)
      throw new RangeError(`secretbox keys are ${SECRETBOX_KEY_BYTES} bytes, not ${key.length}`);
    super(key, writer);
  }

  override toStorageSync(plaintext: Uint8Array): Stored {
    return this.toStorageSyncAfter(0, plaintext);
  }

  override toStorageSyncAfter(headroom: number, plaintext: Uint8Array): Stored {
    const nonce = freshNonce();
    const boxAt = headroom + SECRETBOX_NONCE_BYTES;
    // Every byte is written: the room zeroed, then the nonce and the box.
    const data = pooledBytes(boxAt + SECRETBOX_MAC_BYTES + plaintext.length);
    data.fill(0, 0, headroom);
    data.set(nonce, headroom);
    secretboxSealInto(data.subarray(boxAt), plaintext, nonce, this.key());
    return { data, writer: this.currentWriter() };
  }

  override fromStorageSync(data: Uint8Array): Read {
    if (data.length < SECRETBOX_NONCE_BYTES + SECRETBOX_MAC_BYTES)
      throw new MalformedCiphertextError("the stored data was shorter than the required size");
    const plaintext = secretboxOpen(
      data.subarray(SECRETBOX_NONCE_BYTES),
      data.subarray(0, SECRETBOX_NONCE_BYTES),
      this.key(),
    );
    if (plaintext === undefined) throw new DecryptionFailedError();
    return { plaintext, stale: false, writer: this.currentWriter() };
  }
}
