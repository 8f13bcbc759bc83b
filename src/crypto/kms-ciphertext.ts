import { MalformedCiphertextError } from "../errors.js";
import { lengthPrefixed, readLengthPrefixed } from "./length-prefix.js";
import { SEALED_MIN_BYTES } from "./sealed.js";

/** Format byte of the only KMS ciphertext layout defined so far (SPEC.md §2). */
export const KMS_CIPHERTEXT_FORMAT = 0x01;

/** A KMS ciphertext split into the key id that sealed it and the sealed bytes. */
interface KmsCiphertext {
  keyId: string;
  sealed: Uint8Array;
}

/** KMS ciphertext = 0x01 || lp(key id) || sealed. The key id travels inside for v1beta1. */
export function encodeKmsCiphertext(keyId: string, sealed: Uint8Array): Uint8Array {
  const prefix = lengthPrefixed(keyId);
  const out = new Uint8Array(1 + prefix.length + sealed.length);
  out[0] = KMS_CIPHERTEXT_FORMAT;
  out.set(prefix, 1);
  out.set(sealed, 1 + prefix.length);
  return out;
}

/** Splits a KMS ciphertext, checking its structure only; authenticity is checked on open. */
export function decodeKmsCiphertext(bytes: Uint8Array): KmsCiphertext {
  if (bytes.length === 0) throw new MalformedCiphertextError("ciphertext is empty");
  if (bytes[0] !== KMS_CIPHERTEXT_FORMAT) {
    throw new MalformedCiphertextError(
      `unknown format byte 0x${(bytes[0] as number).toString(16).padStart(2, "0")}`,
    );
  }
  const { text: keyId, next } = readLengthPrefixed(bytes, 1);
  if (keyId.length === 0) throw new MalformedCiphertextError("empty key id");
  const sealed = bytes.subarray(next);
  if (sealed.length < SEALED_MIN_BYTES) {
    throw new MalformedCiphertextError(`sealed part shorter than ${SEALED_MIN_BYTES} bytes`);
  }
  return { keyId, sealed };
}
