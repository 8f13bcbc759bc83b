import { MalformedCiphertextError } from "../errors.js";
import { decodeCanonicalBase64 } from "./canonical-base64.js";
import { SEALED_MIN_BYTES } from "./sealed.js";

const PREFIX = "kmse:v1:";

/** A field value split into the key id that sealed it and the sealed bytes. */
interface SealedFieldValue {
  keyId: string;
  sealed: Uint8Array;
}

/** Field value = "kmse:v1:<key id>:<standard padded base64 of sealed>" (ASCII). */
export function formatFieldValue(keyId: string, sealed: Uint8Array): string {
  return `${PREFIX}${keyId}:${Buffer.from(sealed.buffer, sealed.byteOffset, sealed.length).toString("base64")}`;
}

/** True when text carries the field-value prefix, so callers can tell ciphertext from plain. */
export function isFieldValue(text: string): boolean {
  return text.startsWith(PREFIX);
}

/** Parses a field value, checking its structure only. */
export function parseFieldValue(text: string): SealedFieldValue {
  if (!text.startsWith(PREFIX))
    throw new MalformedCiphertextError("field value does not start with kmse:v1:");
  // The key id itself contains ':' ("local:…") and base64 never does, so the last ':' splits.
  const split = text.lastIndexOf(":");
  const keyId = text.slice(PREFIX.length, split);
  const encoded = text.slice(split + 1);
  if (keyId.length === 0) throw new MalformedCiphertextError("field value has an empty key id");
  // Standard padded base64 in one spelling (SPEC.md §2); anything else is refused, not repaired.
  const sealed = decodeCanonicalBase64(encoded);
  if (sealed === undefined) {
    throw new MalformedCiphertextError("field value is not canonical standard padded base64");
  }
  if (sealed.length < SEALED_MIN_BYTES) {
    throw new MalformedCiphertextError(`sealed part shorter than ${SEALED_MIN_BYTES} bytes`);
  }
  return { keyId, sealed };
}
