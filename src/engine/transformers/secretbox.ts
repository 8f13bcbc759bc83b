import { freshNonce } from "../../crypto/nonce-source.js";
import {
  SECRETBOX_MAC_BYTES,
  SECRETBOX_NONCE_BYTES,
  secretboxOpen,
  secretboxSeal,
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

  override async toStorage(plaintext: Uint8Array): Promise<Stored> {
    const nonce = freshNonce();
    const boxed = secretboxSeal(plaintext, nonce, this.key());
    const data = new Uint8Array(nonce.length + boxed.length);
    data.set(nonce);
    data.set(boxed, nonce.length);
    return { data, writer: this.currentWriter() };
  }

  override async fromStorage(data: Uint8Array): Promise<Read> {
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
