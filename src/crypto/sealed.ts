import { DecryptionFailedError, MalformedCiphertextError } from "../errors.js";
import { deriveRecordKey } from "./derivation.js";
import { freshNonce } from "./nonce-source.js";
import {
  pooledBytes,
  SECRETBOX_MAC_BYTES,
  SECRETBOX_NONCE_BYTES,
  secretboxOpen,
  secretboxSealInto,
} from "./secretbox.js";
import { wipe } from "./wipe.js";

/** Smallest possible sealed value: a nonce and a MAC around an empty plaintext. */
export const SEALED_MIN_BYTES = SECRETBOX_NONCE_BYTES + SECRETBOX_MAC_BYTES;

/**
 * sealed = nonce (24 CSPRNG bytes) || crypto_secretbox_easy(plaintext, nonce, K), with
 * K = HKDF(W, salt = nonce, info = context) (SPEC.md §2). `nonce` is a parameter only so
 * known-answer tests can fix it; production callers leave it out.
 */
export function seal(
  workspaceKey: Uint8Array,
  context: Uint8Array,
  plaintext: Uint8Array,
  nonce: Uint8Array = freshNonce(),
): Uint8Array {
  const sealed = pooledBytes(SEALED_MIN_BYTES + plaintext.length);
  sealInto(sealed, workspaceKey, context, plaintext, nonce);
  return sealed;
}

/**
 * seal() into `out`, which must be exactly SEALED_MIN_BYTES longer than the plaintext: lets a
 * caller that frames the sealed value (a KMS ciphertext) write it in place rather than copy it.
 */
export function sealInto(
  out: Uint8Array,
  workspaceKey: Uint8Array,
  context: Uint8Array,
  plaintext: Uint8Array,
  nonce: Uint8Array = freshNonce(),
): void {
  if (nonce.length !== SECRETBOX_NONCE_BYTES) {
    throw new RangeError(`nonce must be ${SECRETBOX_NONCE_BYTES} bytes`);
  }
  if (out.length !== SEALED_MIN_BYTES + plaintext.length) {
    throw new RangeError(`a sealed value is ${SEALED_MIN_BYTES} bytes longer than its plaintext`);
  }
  const recordKey = deriveRecordKey(workspaceKey, nonce, context);
  try {
    out.set(nonce, 0);
    secretboxSealInto(out.subarray(SECRETBOX_NONCE_BYTES), plaintext, nonce, recordKey);
  } finally {
    wipe(recordKey);
  }
}

/** Opens a sealed value; any authentication failure is the one DecryptionFailedError. */
export function open(
  workspaceKey: Uint8Array,
  context: Uint8Array,
  sealed: Uint8Array,
): Uint8Array {
  if (sealed.length < SEALED_MIN_BYTES) {
    throw new MalformedCiphertextError(`sealed value shorter than ${SEALED_MIN_BYTES} bytes`);
  }
  const nonce = sealed.subarray(0, SECRETBOX_NONCE_BYTES);
  const recordKey = deriveRecordKey(workspaceKey, nonce, context);
  try {
    const plaintext = secretboxOpen(sealed.subarray(SECRETBOX_NONCE_BYTES), nonce, recordKey);
    if (plaintext === undefined) throw new DecryptionFailedError();
    return plaintext;
  } finally {
    wipe(recordKey);
  }
}
