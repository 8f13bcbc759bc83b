import { DecryptionFailedError, MalformedCiphertextError } from "../errors.js";
import { deriveRecordKeyInto, KEY_BYTES } from "./derivation.js";
import { fillFresh } from "./nonce-source.js";
import {
  pooledBytes,
  SECRETBOX_MAC_BYTES,
  SECRETBOX_NONCE_BYTES,
  secretboxOpen,
  secretboxSealInto,
} from "./secretbox.js";

/** Smallest possible sealed value: a nonce and a MAC around an empty plaintext. */
export const SEALED_MIN_BYTES = SECRETBOX_NONCE_BYTES + SECRETBOX_MAC_BYTES;

// One seal or open runs at a time (all of it is synchronous), so one nonce and one record key
// serve every call: at KMS call rates a buffer or view made per call is garbage collection
// work. The record key is zeroed as soon as the cipher has used it.
const nonceScratch = new Uint8Array(SECRETBOX_NONCE_BYTES);
const recordKeyScratch = new Uint8Array(KEY_BYTES);

/**
 * sealed = nonce (24 CSPRNG bytes) || crypto_secretbox_easy(plaintext, nonce, K), with
 * K = HKDF(W, salt = nonce, info = context) (SPEC.md §2). `nonce` is a parameter only so
 * known-answer tests can fix it; production callers leave it out.
 */
export function seal(
  workspaceKey: Uint8Array,
  context: Uint8Array,
  plaintext: Uint8Array,
  nonce?: Uint8Array,
): Uint8Array {
  const sealed = pooledBytes(SEALED_MIN_BYTES + plaintext.length);
  sealInto(sealed, workspaceKey, context, plaintext, nonce);
  return sealed;
}

/**
 * seal() into `out` from `at` to its end, which must be exactly SEALED_MIN_BYTES longer than the
 * plaintext: lets a caller that frames the sealed value (a KMS ciphertext) write it in place
 * rather than copy it.
 */
export function sealInto(
  out: Uint8Array,
  workspaceKey: Uint8Array,
  context: Uint8Array,
  plaintext: Uint8Array,
  nonce?: Uint8Array,
  at = 0,
): void {
  if (nonce !== undefined && nonce.length !== SECRETBOX_NONCE_BYTES) {
    throw new RangeError(`nonce must be ${SECRETBOX_NONCE_BYTES} bytes`);
  }
  if (out.length - at !== SEALED_MIN_BYTES + plaintext.length) {
    throw new RangeError(`a sealed value is ${SEALED_MIN_BYTES} bytes longer than its plaintext`);
  }
  let usedNonce = nonce;
  if (usedNonce === undefined) {
    fillFresh(nonceScratch);
    usedNonce = nonceScratch;
  }
  deriveRecordKeyInto(recordKeyScratch, workspaceKey, usedNonce, context);
  try {
    out.set(usedNonce, at);
    secretboxSealInto(
      out.subarray(at + SECRETBOX_NONCE_BYTES),
      plaintext,
      usedNonce,
      recordKeyScratch,
    );
  } finally {
    recordKeyScratch.fill(0);
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
  for (let index = 0; index < SECRETBOX_NONCE_BYTES; index++)
    nonceScratch[index] = sealed[index] as number;
  deriveRecordKeyInto(recordKeyScratch, workspaceKey, nonceScratch, context);
  try {
    const plaintext = secretboxOpen(
      sealed.subarray(SECRETBOX_NONCE_BYTES),
      nonceScratch,
      recordKeyScratch,
    );
    if (plaintext === undefined) throw new DecryptionFailedError();
    return plaintext;
  } finally {
    recordKeyScratch.fill(0);
  }
}
