/**
 * Opening records as the store keeps them. A value at an encrypted path is ciphertext exactly
 * when the store holds a stamp for it (both are written in one transaction by the codec's seal);
 * a value without one was stored in the clear, before the field map listed its path. Such values
 * are refused unless the caller adopts plaintext, in which case they are returned as they are,
 * named, and rewrap encrypts them.
 */
import { MalformedCiphertextError } from "../errors.js";
import type { FieldCodec, OpenedRecord } from "../fields/field-codec.js";
import { getPath, withoutPath, withPath } from "../fields/field-paths.js";
import type { StoredRecord } from "./repository.js";

/** A stored record opened, with the encrypted paths whose values were read in the clear. */
export interface OpenedStoredRecord extends OpenedRecord {
  /** Encrypted paths that held a plain value (only ever non-empty when adopting plaintext). */
  readonly plaintextFields: readonly string[];
}

/** The encrypted paths of `record` that hold a value (not null) but no stamp. */
export function plaintextPaths(record: StoredRecord, encryptedPaths: readonly string[]): string[] {
  const stamped = new Set(record.stamps.map((stamp) => stamp.path));
  return encryptedPaths.filter((path) => {
    if (stamped.has(path)) return false;
    const value = getPath(record.document, path);
    return value !== undefined && value !== null;
  });
}

/** The workspace argument the codec expects for a stored record. */
export function workspaceOf(record: StoredRecord): { workspace?: string } {
  return record.workspace === null ? {} : { workspace: record.workspace };
}

/**
 * Opens stored records of one resource in one codec call. Plain values at encrypted paths are
 * set aside before the codec sees them and put back after, so it only ever opens ciphertext.
 *
 * @param adoptPlaintext - Return plain values at encrypted paths as they are (the record is
 * then stale); when false such a value is refused.
 * @throws `MALFORMED_CIPHERTEXT` naming the record and path of a plain value, unless adopting;
 * the codec's errors.
 */
export async function openStored(
  codec: FieldCodec,
  resource: string,
  records: readonly StoredRecord[],
  adoptPlaintext: boolean,
): Promise<OpenedStoredRecord[]> {
  const encryptedPaths = codec.encryptedPaths(resource);
  const plain = records.map((record) => plaintextPaths(record, encryptedPaths));
  if (!adoptPlaintext) {
    const index = plain.findIndex((paths) => paths.length > 0);
    if (index >= 0) {
      const record = records[index] as StoredRecord;
      throw new MalformedCiphertextError(
        `${resource} ${JSON.stringify(record.id)} ${plain[index]?.[0]} holds a plain value, stored before the field map listed the field; read it with --adopt-plaintext (adoptPlaintext) and encrypt it with kms-envelope rewrap --adopt-plaintext`,
      );
    }
  }
  const opened = await codec.open(
    resource,
    records.map((record, index) => ({
      id: record.id,
      document: (plain[index] as string[]).reduce(withoutPath, record.document),
      ...workspaceOf(record),
    })),
  );
  if (opened.length !== records.length)
    throw new Error(`the codec returned ${opened.length} records for ${records.length}`);
  return opened.map((record, index) => {
    const paths = plain[index] as string[];
    const stored = records[index] as StoredRecord;
    return {
      ...record,
      // Put back in place: the value in the clear is the value.
      document: paths.reduce(
        (document, path) => withPath(document, path, getPath(stored.document, path) ?? null),
        record.document,
      ),
      stale: record.stale || paths.length > 0,
      plaintextFields: paths,
    };
  });
}
