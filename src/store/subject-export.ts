/**
 * Data-subject export: every record of one subject, as stored. Encrypted fields stay the
 * ciphertext text the store holds (SPEC.md §5: exports carry them as ciphertext, never
 * decrypted), and each record lists which fields are encrypted and by whom, so the recipient
 * can tell ciphertext from plain values. No codec is involved: nothing here can decrypt.
 */
import type { FieldStamp, JsonObject } from "../fields/field-codec.js";
import type { RecordKey, RecordRepository, StoredRecord } from "./repository.js";

/** NDJSON: one record per line; JSON: one document with a `records` array. */
export type ExportFormat = "ndjson" | "json";

/** One exported record. */
export interface ExportedRecord {
  /** The record's resource. */
  readonly resource: string;
  /** The record's id within its resource. */
  readonly id: string;
  /** The data subject exported. */
  readonly subjectId: string;
  /** The workspace whose key sealed its field-service fields; null when none. */
  readonly workspace: string | null;
  /** The record's version. */
  readonly version: number;
  /** ISO 8601 time of its last write. */
  readonly updatedAt: string;
  /** The document as stored: encrypted fields are ciphertext text. */
  readonly document: JsonObject;
  /** The fields of `document` that are ciphertext, with who wrote them (no key material). */
  readonly encryptedFields: readonly FieldStamp[];
}

const PAGE = 500;

/**
 * Reads a subject's records page by page (500 per query), in (resource, id) order. Not a
 * snapshot: records written during the export may or may not be included. Needs no key and
 * decrypts nothing.
 *
 * @param repository - The store's repository.
 * @param subjectId - The data subject whose records are read.
 */
export async function* subjectRecords(
  repository: RecordRepository,
  subjectId: string,
): AsyncGenerator<ExportedRecord> {
  let after: RecordKey | undefined;
  for (;;) {
    const page = await repository.subjectRecords(subjectId, after, PAGE);
    for (const record of page.records) yield exported(record, subjectId);
    if (page.next === undefined) return;
    after = page.next;
  }
}

function exported(record: StoredRecord, subjectId: string): ExportedRecord {
  return {
    resource: record.resource,
    id: record.id,
    subjectId,
    workspace: record.workspace,
    version: record.version,
    updatedAt: record.updatedAt,
    document: record.document,
    encryptedFields: record.stamps,
  };
}

/**
 * Writes a subject's export to `write` (awaited per chunk); returns the record count. Encrypted
 * fields stay ciphertext.
 *
 * @param repository - The store's repository.
 * @param subjectId - The data subject to export.
 * @param format - `ndjson`: one {@link ExportedRecord} per line; `json`: one object with
 * `subjectId`, `exportedAt` and a `records` array.
 * @param write - Receives the text in order; a rejection stops the export and is passed on.
 * @returns How many records were written.
 */
export async function writeSubjectExport(
  repository: RecordRepository,
  subjectId: string,
  format: ExportFormat,
  write: (chunk: string) => Promise<void>,
): Promise<number> {
  let count = 0;
  if (format === "json") {
    await write(
      `{"subjectId":${JSON.stringify(subjectId)},"exportedAt":${JSON.stringify(new Date().toISOString())},"records":[`,
    );
  }
  for await (const record of subjectRecords(repository, subjectId)) {
    const text = JSON.stringify(record);
    await write(format === "json" ? `${count === 0 ? "\n" : ",\n"}${text}` : `${text}\n`);
    count++;
  }
  if (format === "json") await write("\n]}\n");
  return count;
}
