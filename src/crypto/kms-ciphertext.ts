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

let lastPrefix: { keyId: string; bytes: Uint8Array } | undefined;

/** 0x01 || lp(key id), kept for the last key id asked: the primary's, on every Encrypt. */
function kmsCiphertextPrefix(keyId: string): Uint8Array {
  if (lastPrefix?.keyId !== keyId) {
    const prefix = lengthPrefixed(keyId);
    const bytes = new Uint8Array(1 + prefix.length);
    bytes[0] = KMS_CIPHERTEXT_FORMAT;
    bytes.set(prefix, 1);
    lastPrefix = { keyId, bytes };
  }
  return lastPrefix.bytes;
}

/**
 * A KMS ciphertext under `keyId` with room for `sealedBytes` of sealed value after its prefix
 * (at `sealedAt`): the caller seals into it in place instead of copying a sealed value in.
 */
export function kmsCiphertextFor(
  keyId: string,
  sealedBytes: number,
): { ciphertext: Buffer; sealedAt: number } {
  const prefix = kmsCiphertextPrefix(keyId);
  const ciphertext = Buffer.allocUnsafe(prefix.length + sealedBytes);
  ciphertext.set(prefix, 0);
  return { ciphertext, sealedAt: prefix.length };
}

/** KMS ciphertext = 0x01 || lp(key id) || sealed. The key id travels inside for v1beta1. */
export function encodeKmsCiphertext(keyId: string, sealed: Uint8Array): Uint8Array {
  const framed = kmsCiphertextFor(keyId, sealed.length);
  framed.ciphertext.set(sealed, framed.sealedAt);
  return new Uint8Array(framed.ciphertext);
}

/** Splits a KMS ciphertext, checking its structure only; authenticity is checked on open. */
export function decodeKmsCiphertext(bytes: Uint8Array): KmsCiphertext {
  // Most ciphertexts are under the key id last encrypted with: matched as bytes, the key id is
  // not decoded again.
  const known = lastPrefix;
  if (known !== undefined && startsWith(bytes, known.bytes)) {
    const sealed = bytes.subarray(known.bytes.length);
    if (sealed.length >= SEALED_MIN_BYTES) return { keyId: known.keyId, sealed };
  }
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

function startsWith(bytes: Uint8Array, prefix: Uint8Array): boolean {
  if (bytes.length < prefix.length) return false;
  for (let index = 0; index < prefix.length; index++)
    if (bytes[index] !== prefix[index]) return false;
  return true;
}
