import { fieldContext } from "../crypto/contexts.js";
import { formatFieldValue, parseFieldValue } from "../crypto/field-value.js";
import { open, seal } from "../crypto/sealed.js";
import { KmsEnvelopeError } from "../errors.js";
import type { FieldRecord } from "../wire/field-records.js";
import type { MasterKeySet } from "./master-key-set.js";

/** A record of plaintext fields, as the field service receives and returns them. */
type PlainFieldRecord = FieldRecord<Uint8Array>;

/** A record of sealed field values (`kmse:v1:…`). */
export type SealedFieldRecord = FieldRecord<string>;

/**
 * Seals every field of every record under the primary key (SPEC.md §2, field context); all
 * or nothing. Pure over the key set, so a worker thread can run it with its own copy of it.
 */
export function sealRecords(
  keys: MasterKeySet,
  records: readonly PlainFieldRecord[],
): { records: SealedFieldRecord[]; keyId: string } {
  const primary = keys.primary;
  const sealedRecords = records.map((record) => {
    const workspaceKey = primary.workspaceKey(record.workspace);
    // Built with fromEntries, which defines own properties: a field named "__proto__" is a
    // field like any other, not the object's prototype.
    const fields: Record<string, string> = Object.fromEntries(
      Object.entries(record.fields).map(([field, value]) => {
        const context = fieldContext(record.resource, field, record.recordId);
        return [field, formatFieldValue(primary.keyId, seal(workspaceKey, context, value))];
      }),
    );
    return { ...record, fields };
  });
  return { records: sealedRecords, keyId: primary.keyId };
}

/**
 * Opens every field of every record; all or nothing. `stale` is true when some value was
 * sealed under a version other than the primary, so the caller knows to re-seal it. Errors
 * name a record by its position counted from `firstRecord` (where these records start in the
 * caller's whole batch).
 */
export function openRecords(
  keys: MasterKeySet,
  records: readonly SealedFieldRecord[],
  firstRecord = 0,
): { records: PlainFieldRecord[]; stale: boolean } {
  const primaryKeyId = keys.primary.keyId;
  let stale = false;
  const plainRecords = records.map((record, index) => {
    const entries: [string, Uint8Array][] = [];
    for (const [field, value] of Object.entries(record.fields)) {
      try {
        const { keyId, sealed } = parseFieldValue(value);
        if (keyId !== primaryKeyId) stale = true;
        const workspaceKey = keys.version(keyId).workspaceKey(record.workspace);
        entries.push([
          field,
          open(workspaceKey, fieldContext(record.resource, field, record.recordId), sealed),
        ]);
      } catch (error) {
        if (error instanceof KmsEnvelopeError) {
          // Names the position, never the value, so the caller can find the bad row; the
          // original (a DecryptionFailedError, say) stays reachable as the cause.
          throw new KmsEnvelopeError(
            error.code,
            `record ${firstRecord + index} field ${JSON.stringify(field)}: ${error.message}`,
            { cause: error },
          );
        }
        throw error;
      }
    }
    return { ...record, fields: Object.fromEntries(entries) };
  });
  return { records: plainRecords, stale };
}
