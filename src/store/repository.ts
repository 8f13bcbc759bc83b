/**
 * The one repository interface behind which the SQLite and PostgreSQL backends keep records.
 * A repository never sees keys or plaintext of encrypted fields: documents arrive sealed by a
 * FieldCodec (src/fields/field-codec.ts) and their stamps are kept beside them, so "which fields
 * are not under the current writer" is a query over stamps, not a scan of ciphertexts.
 */
import type { FieldStamp, JsonObject, LookupToken } from "../fields/field-codec.js";

/** Identifies one record: its resource (as the field map names it) and its id there. */
export interface RecordKey {
  /** The resource name, as the field map gives it. */
  readonly resource: string;
  /** The record's id, unique within its resource. */
  readonly id: string;
}

/** A record as stored: encrypted fields are the text the codec produced. */
export interface StoredRecord extends RecordKey {
  /** The data subject (owner) the record belongs to, for exports; null for system records. */
  readonly subjectId: string | null;
  /** Workspace whose key seals field-service fields; null when the resource needs none. */
  readonly workspace: string | null;
  /** The document as stored: listed fields hold the codec's ciphertext text. */
  readonly document: JsonObject;
  /** One stamp per encrypted field present in the document. */
  readonly stamps: readonly FieldStamp[];
  /** Starts at 1 and grows by one with every write: the optimistic-concurrency token. */
  readonly version: number;
  /** ISO 8601 time of the last write. */
  readonly updatedAt: string;
}

/** What a caller supplies to create a record: a document already sealed by the codec. */
export interface NewRecord {
  /** The record's id within the resource. */
  readonly id: string;
  /** The data subject (owner), for exports; null for system records. */
  readonly subjectId: string | null;
  /** The workspace that sealed its field-service fields; null when none. */
  readonly workspace: string | null;
  /** The sealed document; must be a JSON object. */
  readonly document: JsonObject;
  /** The codec's stamps for the document, at most one per path. */
  readonly stamps: readonly FieldStamp[];
  /** The codec's lookup tokens for the document, at most one per path; default none. */
  readonly tokens?: readonly LookupToken[];
}

/** A replacement of a record's document that only applies while it is still at `expectedVersion`. */
export interface RecordReplacement {
  /** The record's id within the resource. */
  readonly id: string;
  /** The version the caller read; the replacement applies only while the record is at it. */
  readonly expectedVersion: number;
  /** The new sealed document; must be a JSON object. */
  readonly document: JsonObject;
  /** Its stamps, at most one per path; they replace the record's stamps. */
  readonly stamps: readonly FieldStamp[];
  /**
   * Its lookup tokens, at most one per path; they replace the record's tokens (absent: it has
   * none any more), so a changed value is no longer found by its old one.
   */
  readonly tokens?: readonly LookupToken[];
}

/** Result of a batch of replacements applied in one transaction. */
export interface ReplaceOutcome {
  /** New version of each record that was written, by id. */
  readonly written: ReadonlyMap<string, number>;
  /** Ids left untouched because someone else changed (or deleted) them since they were read. */
  readonly conflicts: readonly string[];
}

/** The writer one encrypted field path of a resource should be under. */
export interface PathWriter {
  /** The encrypted field path, as the field map names it. */
  readonly path: string;
  /** The writer's provider, as in {@link FieldStamp.provider}. */
  readonly provider: string;
  /** The writer's key id, as in {@link FieldStamp.keyId}. */
  readonly keyId: string;
}

/** How many stored fields of a resource path one writer (provider, key id) wrote. */
export interface WriterCount extends PathWriter {
  /** The resource the fields belong to. */
  readonly resource: string;
  /** How many stored fields (one per record at most) this writer wrote at this path. */
  readonly fields: number;
}

/** The master-key version one lookup field's tokens should be under. */
export interface TokenVersion {
  /** The lookup field's path, as the field map names it. */
  readonly path: string;
  /** The master-key version (the daemon's primary key id) named in `kmsl:v1:<key id>:`. */
  readonly keyId: string;
}

/** How many stored lookup tokens of a resource path were computed under one master-key version. */
export interface TokenCount extends TokenVersion {
  /** The resource the tokens belong to. */
  readonly resource: string;
  /** How many tokens (one per record at most) this version keys at this path. */
  readonly tokens: number;
}

/** What a record must be under for rewrap to have nothing to do with it. */
export interface RewrapTarget {
  /** The writer each encrypted path should be under. */
  readonly writers: readonly PathWriter[];
  /** The master-key version each lookup field's token should be under; default none. */
  readonly tokens?: readonly TokenVersion[];
  /** Encrypted paths whose values in the clear (no stamp) count as work; default none. */
  readonly plaintext?: readonly string[];
}

/** What {@link RecordRepository.scrub} did. */
export interface ScrubOutcome {
  /** True when no overwritten value is left in the database's files. */
  readonly complete: boolean;
  /** What is left and what to do about it, when not complete. */
  readonly advice?: string;
}

/** One page of a data subject's records, and where the next one starts. */
export interface SubjectPage {
  /** The page's records that still exist, in (resource, id) order. */
  readonly records: StoredRecord[];
  /** The last key read when the page was full; undefined at the end. */
  readonly next: RecordKey | undefined;
}

/** One run of shared rewrap toward a target: the batches its workers lease. */
export interface RewrapRun {
  /** The run's id in the store. */
  readonly runId: string;
  /** 1 for the first run toward this resource and target, one more for each later run. */
  readonly generation: number;
  /** Batches the run was cut into when it was planned. */
  readonly batches: number;
  /** Records that needed rewrap when it was planned. */
  readonly records: number;
}

/**
 * A batch of a run that one worker holds until it expires: the records needing rewrap with ids
 * after `afterId` up to `lastId` (byte order).
 */
export interface RewrapLease {
  /** The run. */
  readonly runId: string;
  /** The batch's number in the run. */
  readonly batch: number;
  /** Ids after this one belong to the batch (`""` for the first). */
  readonly afterId: string;
  /** The batch's last id. */
  readonly lastId: string;
  /** The worker holding it. */
  readonly workerId: string;
  /** Grows with every claim: writes under an older generation are refused. */
  readonly generation: number;
  /** How long each claim and each write extends the lease, in ms. */
  readonly leaseMs: number;
  /** True when this claim took the batch over from a worker whose lease expired. */
  readonly takenOver: boolean;
}

/** A run's progress summed over every worker, from the store. */
export interface RewrapRunProgress {
  /** Batches the run was cut into. */
  readonly batches: number;
  /** Batches some worker finished. */
  readonly batchesDone: number;
  /** Batches a worker holds now (lease not expired). */
  readonly batchesLeased: number;
  /** Records needing rewrap when the run was planned. */
  readonly records: number;
  /** Planned records of the finished batches. */
  readonly recordsDone: number;
  /** Records rewritten by every worker. */
  readonly recordsRewrapped: number;
  /** Fields sealed in them. */
  readonly fieldsRewrapped: number;
  /** Records changed by someone else between read and write. */
  readonly conflictsRetried: number;
  /** Records no worker could open. */
  readonly failed: number;
}

/**
 * What several rewrap workers share through one store (PostgreSQL): runs planned once, batches
 * leased with `FOR UPDATE SKIP LOCKED`, expired leases taken over, and writes fenced by the
 * lease's generation. Failures are `STORE_UNAVAILABLE`; a lease that is no longer the worker's
 * is `STORE_CONFLICT`.
 */
export interface SharedRewrapStore {
  /**
   * The open run of `resource` toward `target`, or a new one planned from what needs rewrap now,
   * in batches of `batchSize` records (a run with nothing to do is finished at once).
   */
  openRun(resource: string, target: RewrapTarget, batchSize: number): Promise<RewrapRun>;
  /** Leases the first batch nobody holds (never claimed, or its lease expired); undefined if none. */
  claim(runId: string, workerId: string, leaseMs: number): Promise<RewrapLease | undefined>;
  /**
   * {@link RecordRepository.replace} under a lease: in the same transaction the lease is checked
   * (still this worker's, same generation, not expired), extended, and credited with what was
   * written. `STORE_CONFLICT` and nothing written when the lease is lost. With `finish` (the
   * batch's last write), the batch is also marked done, with `finish.failed` records that could
   * not be opened, when every replacement was written (then `done` is true); otherwise
   * {@link SharedRewrapStore.complete} is still due after the conflicts are retried. A batch
   * marked done with `finish.claimNext` also claims the worker's next batch (`next`, as
   * {@link SharedRewrapStore.claim} would), in the same commit.
   */
  replaceLeased(
    resource: string,
    lease: RewrapLease,
    replacements: readonly RecordReplacement[],
    finish?: { readonly failed: number; readonly claimNext?: boolean },
  ): Promise<ReplaceOutcome & { readonly done: boolean; readonly next: RewrapLease | undefined }>;
  /**
   * The records of a leased batch that need rewrap under `target` now, after `afterId` in id
   * order, at most `limit`: {@link RecordRepository.recordsNotUnder} within the batch and
   * {@link RecordRepository.getMany} of those, in one statement.
   */
  readLeased(
    resource: string,
    target: RewrapTarget,
    lease: RewrapLease,
    afterId: string,
    limit: number,
  ): Promise<StoredRecord[]>;
  /** Marks the leased batch done, with `failed` records that could not be opened. */
  complete(lease: RewrapLease, failed: number): Promise<void>;
  /**
   * Gives a leased batch back unfinished (the worker is stopping): another worker can claim it
   * at once instead of when the lease would expire, as a batch never claimed. `STORE_CONFLICT`
   * when the lease is no longer the worker's.
   */
  release(lease: RewrapLease): Promise<void>;
  /** The run's progress over every worker. */
  runProgress(runId: string): Promise<RewrapRunProgress>;
  /** Marks the run finished once every batch is done; later workers then plan a new run. */
  finishRun(runId: string): Promise<void>;
}

/**
 * Storage of records and their field stamps; implementations are safe across processes.
 * {@link openRepository} opens one. Failures to reach the database are `STORE_UNAVAILABLE`
 * (PostgreSQL; see the remarks for SQLite); documents that are not JSON objects and duplicate
 * stamps are refused (`INVALID_REQUEST`) and nothing is written.
 *
 * @remarks
 * The SQLite backend reports failures to open the file or migrate it as `STORE_UNAVAILABLE`,
 * but lets later driver errors (a lock held longer than its 10 s busy timeout, a full disk)
 * through as they are.
 */
export interface RecordRepository {
  /** "sqlite" or "postgres", for logs and summaries. */
  readonly backend: string;
  /**
   * Creates records of one resource at version 1 in one transaction (all or nothing);
   * `STORE_CONFLICT` when one exists.
   *
   * @returns The records as stored, in input order.
   */
  insert(resource: string, records: readonly NewRecord[]): Promise<StoredRecord[]>;
  /** One record with its stamps; undefined when there is none. */
  get(key: RecordKey): Promise<StoredRecord | undefined>;
  /** The records of `resource` among `ids` that exist, in no particular order. */
  getMany(resource: string, ids: readonly string[]): Promise<StoredRecord[]>;
  /**
   * Replaces documents and stamps in one transaction. A record whose version is no longer the
   * expected one is left alone and reported as a conflict, so stale data never overwrites a
   * newer write. Each written record's version grows by one.
   */
  replace(resource: string, replacements: readonly RecordReplacement[]): Promise<ReplaceOutcome>;
  /** Deletes a record (only at `expectedVersion` when given); false when nothing was deleted. */
  delete(key: RecordKey, expectedVersion?: number): Promise<boolean>;
  /**
   * Ids of the records of `resource` whose lookup token at `path` is one of `tokens`, after
   * `page.afterId` (`""` for the start) in id order, at most `page.limit`: what a search by a
   * field's value reads before opening the records.
   */
  recordsWithToken(
    resource: string,
    path: string,
    tokens: readonly string[],
    page: { afterId: string; limit: number },
  ): Promise<string[]>;
  /** Every resource that has records, sorted. */
  resources(): Promise<string[]>;
  /** How many records a resource has. */
  countRecords(resource: string): Promise<number>;
  /** Ids of a resource after `afterId` (`""` for the start) in id order, at most `limit`. */
  recordIds(resource: string, afterId: string, limit: number): Promise<string[]>;
  /**
   * One page of a data subject's records after `after` (undefined for the start) in (resource,
   * id) order: at most `limit` keys are read and a record deleted meanwhile is left out, so a
   * page may be short or empty with more to come. `next` is where the following page starts;
   * undefined when there is none.
   */
  subjectRecords(
    subjectId: string,
    after: RecordKey | undefined,
    limit: number,
  ): Promise<SubjectPage>;
  /** Stored encrypted fields grouped by resource, path and writer. */
  writerCounts(): Promise<WriterCount[]>;
  /** Stored lookup tokens grouped by resource, path and the master-key version they name. */
  tokenCounts(): Promise<TokenCount[]>;
  /**
   * How many records of `resource` hold a field at `path` (it has a stamp) but no lookup token
   * there under any version: those written before the field map declared the lookup.
   */
  countMissingTokens(resource: string, path: string): Promise<number>;
  /**
   * How many records of `resource` hold a value at the encrypted `path` that has no stamp: a
   * value stored in the clear before the field map listed the path, which rewrap with
   * `adoptPlaintext` encrypts.
   */
  countPlaintext(resource: string, path: string): Promise<number>;
  /**
   * Ids (after `afterId`, in id order, at most `limit`) of records of `resource` that need
   * rewrap under `target`: a field at one of its writers' paths whose stamp names another
   * writer; a field at one of its lookup paths (it has a stamp) with no token there under that
   * version (a token under an older version, or none because `lookup` was added after the
   * record was written); or a value in the clear at one of its plaintext paths.
   */
  recordsNotUnder(
    resource: string,
    target: RewrapTarget,
    afterId: string,
    limit: number,
  ): Promise<string[]>;
  /** How many records `recordsNotUnder` would list from the start. */
  countRecordsNotUnder(resource: string, target: RewrapTarget): Promise<number>;
  /**
   * Removes overwritten values from the database's files where the backend can, once rewrap has
   * replaced plaintext: SQLite (which writes with `secure_delete` on) rebuilds the file with
   * VACUUM, so no free page keeps an old value, and checkpoints and truncates its WAL. PostgreSQL
   * cannot from here: old row versions stay in the table files (and its WAL and backups) until
   * VACUUM reclaims them, which the outcome says.
   */
  scrub(): Promise<ScrubOutcome>;
  /** Releases the database; idempotent. */
  close(): Promise<void>;
  /** Shared rewrap, where the backend supports several workers (PostgreSQL). */
  readonly sharedRewrap?: SharedRewrapStore;
}
