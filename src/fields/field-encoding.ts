import { decodeCanonicalBase64 } from "../crypto/canonical-base64.js";
import { InvalidRequestError } from "../errors.js";
import type { JsonValue } from "./field-codec.js";
import type { FieldType } from "./field-map.js";

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** A field's plaintext value: any JSON value, or raw bytes for `bytes` fields. */
export type FieldPlaintext = JsonValue | Uint8Array;

/** Turns a field's value into the bytes that are encrypted; refuses a value of the wrong type. */
export function valueToBytes(value: FieldPlaintext, type: FieldType, where: string): Uint8Array {
  if (type === "bytes") {
    if (value instanceof Uint8Array) return value;
    const decoded = typeof value === "string" ? decodeCanonicalBase64(value) : undefined;
    if (decoded !== undefined) return decoded;
    throw new InvalidRequestError(
      `${where} is a bytes field: give a Uint8Array or standard base64 text`,
    );
  }
  if (value instanceof Uint8Array)
    throw new InvalidRequestError(
      `${where} is a ${type} field, not bytes: declare it as bytes in the field map`,
    );
  if (type === "string") {
    if (typeof value !== "string")
      throw new InvalidRequestError(
        `${where} is a string field but holds ${value === null ? "null" : Array.isArray(value) ? "an array" : `a ${typeof value}`}: declare it as json in the field map to keep its type`,
      );
    return Buffer.from(value, "utf8");
  }
  return Buffer.from(JSON.stringify(value), "utf8");
}

/** Restores a decrypted field to its value and type. */
export function bytesToValue(bytes: Uint8Array, type: FieldType, where: string): FieldPlaintext {
  if (type === "bytes") return bytes;
  try {
    const text = utf8.decode(bytes);
    return type === "string" ? text : (JSON.parse(text) as JsonValue);
  } catch {
    throw new InvalidRequestError(
      `${where} decrypted to something that is not ${type === "string" ? "UTF-8 text" : "JSON"}: check the field's type in the field map`,
    );
  }
}

/** The form a decrypted value takes inside a JSON document (bytes become base64 text). */
export function asJson(value: FieldPlaintext): JsonValue {
  return value instanceof Uint8Array ? Buffer.from(value).toString("base64") : value;
}
