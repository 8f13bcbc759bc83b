import { writeLengthPrefixed } from "./length-prefix.js";

/** Context of values sealed for the KMS v2 RPCs (SPEC.md §2). */
export const KMS_V2_CONTEXT: Uint8Array = Buffer.from("kms-envelope/v1/kms-v2", "utf8");

/** Context of values sealed for the KMS v1beta1 RPCs (SPEC.md §2). */
export const KMS_V1_CONTEXT: Uint8Array = Buffer.from("kms-envelope/v1/kms-v1", "utf8");

const FIELD_LABEL = Buffer.from("kms-envelope/v1/field\u0000", "utf8");

/**
 * Context of a field-service value: "kms-envelope/v1/field" || 0x00 || lp(resource) ||
 * lp(field) || lp(record_id). Binding all three makes a value moved to another record or field
 * fail authentication.
 */
export function fieldContext(resource: string, field: string, recordId: string): Uint8Array {
  // One buffer written in place: the field service builds a context for every value.
  const out = Buffer.allocUnsafe(
    FIELD_LABEL.length +
      6 +
      Buffer.byteLength(resource) +
      Buffer.byteLength(field) +
      Buffer.byteLength(recordId),
  );
  FIELD_LABEL.copy(out, 0);
  let at = writeLengthPrefixed(out, FIELD_LABEL.length, resource);
  at = writeLengthPrefixed(out, at, field);
  writeLengthPrefixed(out, at, recordId);
  return out;
}
