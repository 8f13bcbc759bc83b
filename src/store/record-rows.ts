/**
 * Conversions between repository records and database rows that both backends share: documents
 * as JSON text, stamps as rows of their own table.
 */

import { KmsEnvelopeError } from "../errors.js";
import type { FieldRoute, FieldStamp, JsonObject, LookupToken } from "../fields/field-codec.js";
import type { RecordKey, StoredRecord } from "./repository.js";

/** A kmse_records row as both drivers return it (updated_at normalised by the caller). */
export interface RecordRow {
  resource: string;
  id: string;
  subject_id: string | null;
  workspace: string | null;
  document: string;
  version: number;
  updated_at: string;
}

/** A kmse_field_stamps row. */
export interface StampRow {
  record_id: string;
  path: string;
  route: string;
  provider: string;
  key_id: string;
}

/** Serialises a document; refuses anything that is not a JSON object so reads never fail. */
export function documentText(document: JsonObject): string {
  if (typeof document !== "object" || document === null || Array.isArray(document)) {
    throw new KmsEnvelopeError("INVALID_REQUEST", "a record document must be a JSON object");
  }
  return JSON.stringify(document);
}

/** Checks that a record's stamps and tokens each name a path once, before anything is written. */
export function checkStamps(
  id: string,
  stamps: readonly FieldStamp[],
  tokens: readonly LookupToken[] = [],
): void {
  for (const [what, entries] of [
    ["stamps", stamps],
    ["lookup tokens", tokens],
  ] as const) {
    const paths = new Set<string>();
    for (const { path } of entries) {
      if (paths.has(path)) {
        throw new KmsEnvelopeError(
          "INVALID_REQUEST",
          `record ${JSON.stringify(id)} has two ${what} for field ${JSON.stringify(path)}; the codec must give each field one`,
        );
      }
      paths.add(path);
    }
  }
}

/** STORE_CONFLICT for creating a record that exists (`id` when the database said which). */
export function alreadyExists(resource: string, id: string | undefined): KmsEnvelopeError {
  return new KmsEnvelopeError(
    "STORE_CONFLICT",
    `${id === undefined ? "a record" : `record ${JSON.stringify(id)}`} of ${resource} already exists; update it instead`,
  );
}

/** Groups stamp rows by record id. */
export function stampsById(rows: readonly StampRow[]): Map<string, FieldStamp[]> {
  const byId = new Map<string, FieldStamp[]>();
  for (const row of rows) {
    const stamp: FieldStamp = {
      path: row.path,
      route: row.route as FieldRoute,
      provider: row.provider,
      keyId: row.key_id,
    };
    const list = byId.get(row.record_id);
    if (list === undefined) byId.set(row.record_id, [stamp]);
    else list.push(stamp);
  }
  return byId;
}

/** Builds the repository's view of a row and its stamps. */
export function toStoredRecord(row: RecordRow, stamps: readonly FieldStamp[]): StoredRecord {
  return {
    resource: row.resource,
    id: row.id,
    subjectId: row.subject_id,
    workspace: row.workspace,
    document: JSON.parse(row.document) as JsonObject,
    stamps,
    version: row.version,
    updatedAt: row.updated_at,
  };
}

/**
 * Loads the records of `keys` resource by resource and returns them in the order of `keys` (the
 * database's order, which pagination cursors rely on); keys deleted meanwhile are left out.
 */
export async function inKeyOrder(
  keys: readonly RecordKey[],
  load: (resource: string, ids: string[]) => Promise<StoredRecord[]>,
): Promise<StoredRecord[]> {
  const groups = new Map<string, string[]>();
  for (const key of keys) {
    const ids = groups.get(key.resource);
    if (ids === undefined) groups.set(key.resource, [key.id]);
    else ids.push(key.id);
  }
  const loaded = new Map<string, StoredRecord>();
  for (const [resource, ids] of groups) {
    for (const record of await load(resource, ids)) {
      loaded.set(JSON.stringify([record.resource, record.id]), record);
    }
  }
  return keys.flatMap((key) => loaded.get(JSON.stringify([key.resource, key.id])) ?? []);
}
