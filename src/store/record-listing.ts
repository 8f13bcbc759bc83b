/**
 * What `kms-envelope store list` shows of a resource: each record's id, owner, workspace,
 * version and stamps (who encrypted which field, with which key), read from the stamps the
 * store keeps. No document and no codec: nothing here can decrypt, so listing needs no key.
 */
import type { FieldStamp } from "../fields/field-codec.js";
import type { RecordRepository } from "./repository.js";

/** One record without its document. */
export interface ListedRecord {
  readonly id: string;
  readonly subjectId: string | null;
  readonly workspace: string | null;
  readonly version: number;
  readonly updatedAt: string;
  readonly stamps: readonly FieldStamp[];
}

const PAGE = 500;

/** The records of a resource in id order, page by page; only those of `workspace` when given. */
export async function* listRecords(
  repository: RecordRepository,
  resource: string,
  options: { workspace?: string } = {},
): AsyncGenerator<ListedRecord> {
  let after = "";
  for (;;) {
    const ids = await repository.recordIds(resource, after, PAGE);
    const records = new Map(
      (await repository.getMany(resource, ids)).map((record) => [record.id, record]),
    );
    for (const id of ids) {
      // Absent when deleted between the two reads: it is no longer there to list.
      const record = records.get(id);
      if (record === undefined) continue;
      if (options.workspace !== undefined && record.workspace !== options.workspace) continue;
      const { subjectId, workspace, version, updatedAt, stamps } = record;
      yield { id, subjectId, workspace, version, updatedAt, stamps };
    }
    if (ids.length < PAGE) return;
    after = ids[ids.length - 1] as string;
  }
}
