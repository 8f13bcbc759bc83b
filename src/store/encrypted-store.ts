/**
 * What applications use: records whose listed fields are sealed by a FieldCodec before they
 * reach the repository and opened after they leave it. Writes are optimistic: an update names
 * the version it read and fails with STORE_CONFLICT if someone (rewrap included) wrote since.
 */

import { InvalidRequestError, KmsEnvelopeError } from "../errors.js";
import type { FieldCodec, JsonObject, SealedRecord } from "../fields/field-codec.js";
import type { PlaintextGuard } from "./plaintext-guard.js";
import type { RecordKey, RecordRepository, StoredRecord } from "./repository.js";
import { type OpenedStoredRecord, openStored } from "./stored-fields.js";

// Record ids a search reads per query: a value many records share is read and opened in pages
// of this size, so one search never sends the daemon an unbounded batch.
const FIND_PAGE = 500;

/** A record as the application sees it: encrypted fields opened. */
export interface PlainRecord extends RecordKey {
  /** The data subject (owner), for exports; null for system records. */
  readonly subjectId: string | null;
  /** The workspace whose key seals its field-service fields; null when none. */
  readonly workspace: string | null;
  /** The document with encrypted fields opened (for create and update: the one given). */
  readonly document: JsonObject;
  /** The version to pass to the next update (starts at 1, grows by one per write). */
  readonly version: number;
  /** ISO 8601 time of the last write. */
  readonly updatedAt: string;
  /**
   * True when some field was written by an earlier key or provider, or is still in the clear
   * (rewrap will move or encrypt it).
   */
  readonly stale: boolean;
  /**
   * Encrypted fields that were read as plain values because the store held them in the clear
   * (only with `adoptPlaintext`; rewrap with it encrypts them). Empty for created and updated
   * records.
   */
  readonly plaintextFields: readonly string[];
}

/** A record to create. */
export interface RecordInput {
  /** The record's id within its resource; also binds its sealed fields to it. */
  readonly id: string;
  /** The data subject (owner), for exports; default null. Fixed at creation. */
  readonly subjectId?: string | null;
  /**
   * The workspace whose key seals field-service fields (required for such resources); default
   * null. Fixed at creation: updates reseal under the stored workspace.
   */
  readonly workspace?: string | null;
  /** The plaintext document; must be a JSON object. */
  readonly document: JsonObject;
}

/**
 * Seals on write, opens on read, checks plaintext fields with the guard. Every call first asks
 * the codec whether it knows the resource, so a mistyped name fails (`UNMAPPED_RESOURCE`) before
 * the guard or the repository is involved, reads and deletes included.
 *
 * @remarks
 * Safe to use from several instances and processes at once: writes are optimistic, so a lost
 * race is `STORE_CONFLICT`, never a silent overwrite. Besides the codes named per method, every
 * call can fail with the codec's errors (see {@link FieldCodec}) and the repository's
 * (`STORE_UNAVAILABLE`). Neither the store nor its errors ever hold keys; error messages name
 * records, never field values.
 */
export class EncryptedStore {
  readonly #repository: RecordRepository;
  readonly #codec: FieldCodec;
  readonly #guard: PlaintextGuard | undefined;
  readonly #adoptPlaintext: boolean;

  /**
   * @param options - `repository` keeps the records; `codec` (usually from
   * {@link openFieldLayer}) seals and opens them; `guard`, when given, checks plaintext fields
   * before every write. The store does not close them. `adoptPlaintext` (default false) reads
   * values the store holds in the clear at encrypted paths (written before the field map listed
   * them) as they are, naming them in {@link PlainRecord.plaintextFields}, instead of refusing
   * them with `MALFORMED_CIPHERTEXT`: for the time between listing a field and running
   * `rewrap` with `adoptPlaintext`, after which no such value is left.
   */
  constructor(options: {
    repository: RecordRepository;
    codec: FieldCodec;
    guard?: PlaintextGuard;
    adoptPlaintext?: boolean;
  }) {
    this.#repository = options.repository;
    this.#codec = options.codec;
    this.#guard = options.guard;
    this.#adoptPlaintext = options.adoptPlaintext === true;
  }

  /**
   * Creates a record at version 1; returns it as a read would.
   *
   * @param resource - The resource as the field map names it.
   * @param input - The record; its document is sealed, never modified.
   * @throws `STORE_CONFLICT` when the record exists; `PLAINTEXT_CREDENTIAL` when the guard
   * refuses a plaintext field; `UNMAPPED_RESOURCE`; `INVALID_REQUEST` when the document is not
   * a JSON object or a field value has the wrong type.
   */
  async create(resource: string, input: RecordInput): Promise<PlainRecord> {
    const [created] = await this.createMany(resource, [input]);
    return created as PlainRecord;
  }

  /**
   * Creates records of one resource, sealed in one codec call and inserted in one transaction:
   * all of them or (STORE_CONFLICT when one exists) none.
   */
  async createMany(resource: string, inputs: readonly RecordInput[]): Promise<PlainRecord[]> {
    this.#codec.checkResource(resource);
    if (inputs.length === 0) return [];
    const sealed = await this.#seal(
      resource,
      inputs.map((input) => ({ ...input, workspace: input.workspace ?? null })),
    );
    const stored = await this.#repository.insert(
      resource,
      inputs.map((input, index) => ({
        id: input.id,
        subjectId: input.subjectId ?? null,
        workspace: input.workspace ?? null,
        document: (sealed[index] as SealedRecord).document,
        stamps: (sealed[index] as SealedRecord).stamps,
        tokens: (sealed[index] as SealedRecord).tokens ?? [],
      })),
    );
    return stored.map((record, index) =>
      plain(record, (inputs[index] as RecordInput).document, false),
    );
  }

  /**
   * Reads and opens a record; undefined when there is none, or when `workspace` is given and
   * the record belongs to another one (so one tenant cannot learn which ids another uses).
   *
   * @throws `UNMAPPED_RESOURCE`; `DECRYPTION_FAILED`, `UNKNOWN_KEY_ID` or
   * `MALFORMED_CIPHERTEXT` when a stored field does not open; `MALFORMED_CIPHERTEXT` also for
   * a field the store holds in the clear, unless the store adopts plaintext.
   */
  async read(
    resource: string,
    id: string,
    options: { workspace?: string } = {},
  ): Promise<PlainRecord | undefined> {
    this.#codec.checkResource(resource);
    const stored = await this.#repository.get({ resource, id });
    if (stored === undefined) return undefined;
    if (options.workspace !== undefined && stored.workspace !== options.workspace) return undefined;
    const [opened] = await openStored(this.#codec, resource, [stored], this.#adoptPlaintext);
    if (opened === undefined) throw new Error(`the codec returned no record for ${resource} ${id}`);
    return plain(stored, opened.document, opened.stale, opened.plaintextFields);
  }

  /**
   * Finds and opens the records of one workspace whose field equals `value` after the field's
   * normalizers (so `" Ada@Example.com"` finds `ada@example.com` when the map says
   * `lookup: [trim, lowercase]`), in id order. Tokens of every master-key version the daemon
   * holds are matched, so records written before a rotation are found until rewrap moves them.
   * A value still in the clear has no token: its record is found once rewrap with
   * `adoptPlaintext` has encrypted it.
   *
   * @param resource - The resource as the field map names it.
   * @param query - `field`: a field the map declares a lookup for; `value`: the value searched
   * for; `workspace`: the workspace searched (tokens are keyed per workspace, so another
   * workspace's records never match); `limit`: at most this many records (default all);
   * `after`: only records whose id sorts after it (byte order), so the next page of a search
   * that filled its `limit` starts after the last id it returned.
   * @returns Fewer records than `limit` only when there are no more.
   * @throws `UNMAPPED_RESOURCE`; `INVALID_REQUEST` when the field has no lookup in the field map
   * or `limit` is not a positive whole number; the codec's errors when a found record does not
   * open.
   */
  async find(
    resource: string,
    query: { field: string; value: string; workspace: string; after?: string; limit?: number },
  ): Promise<PlainRecord[]> {
    this.#codec.checkResource(resource);
    const limit = query.limit ?? Number.POSITIVE_INFINITY;
    if (!(limit > 0) || (limit !== Number.POSITIVE_INFINITY && !Number.isInteger(limit)))
      throw new InvalidRequestError(`find: limit must be a positive whole number, not ${limit}`);
    const tokens = await this.#codec.tokensFor(resource, query.field, query.workspace, query.value);
    const found: PlainRecord[] = [];
    let cursor = query.after ?? "";
    while (found.length < limit) {
      const want = Math.min(FIND_PAGE, limit - found.length);
      const ids = await this.#repository.recordsWithToken(resource, query.field, tokens, {
        afterId: cursor,
        limit: want,
      });
      if (ids.length === 0) break;
      cursor = ids[ids.length - 1] as string;
      found.push(...(await this.#openFound(resource, ids, query.workspace)));
      if (ids.length < want) break;
    }
    return found;
  }

  /** The records among `ids` that are of `workspace`, opened, in the order of `ids`. */
  async #openFound(resource: string, ids: readonly string[], workspace: string) {
    // The token already says which workspace; the stored column says it again, so a found
    // record of another workspace (a token copied between rows) is never returned.
    const byId = new Map(
      (await this.#repository.getMany(resource, ids)).map((record) => [record.id, record]),
    );
    const stored = ids.flatMap((id) => {
      const record = byId.get(id);
      return record !== undefined && record.workspace === workspace ? [record] : [];
    });
    if (stored.length === 0) return [];
    const opened = await openStored(this.#codec, resource, stored, this.#adoptPlaintext);
    return stored.map((record, index) => {
      const openedRecord = opened[index] as OpenedStoredRecord;
      return plain(record, openedRecord.document, openedRecord.stale, openedRecord.plaintextFields);
    });
  }

  /**
   * Replaces a record's document if it is still at `expectedVersion`; otherwise
   * `STORE_CONFLICT` (read it again, apply the change, retry). The subject and workspace stay as
   * created.
   *
   * @param resource - The resource as the field map names it.
   * @param id - The record's id.
   * @param expectedVersion - The version the change is based on (from create, read or update).
   * @param document - The whole new plaintext document (not a patch).
   * @returns The new state: the given document and the new version.
   * @throws `STORE_CONFLICT` when the record changed or was deleted since `expectedVersion`;
   * `PLAINTEXT_CREDENTIAL`, `UNMAPPED_RESOURCE` and `INVALID_REQUEST` as for create.
   */
  async update(
    resource: string,
    id: string,
    expectedVersion: number,
    document: JsonObject,
  ): Promise<PlainRecord> {
    this.#codec.checkResource(resource);
    const current = await this.#repository.get({ resource, id });
    if (current === undefined) {
      throw new KmsEnvelopeError(
        "STORE_CONFLICT",
        `${resource} ${JSON.stringify(id)} does not exist (deleted meanwhile?); create it instead`,
      );
    }
    const [sealed] = (await this.#seal(resource, [
      { id, workspace: current.workspace, document },
    ])) as [SealedRecord];
    const outcome = await this.#repository.replace(resource, [
      {
        id,
        expectedVersion,
        document: sealed.document,
        stamps: sealed.stamps,
        tokens: sealed.tokens ?? [],
      },
    ]);
    const version = outcome.written.get(id);
    if (version === undefined) {
      throw new KmsEnvelopeError(
        "STORE_CONFLICT",
        `${resource} ${JSON.stringify(id)} changed since version ${expectedVersion} was read; read it again and retry`,
      );
    }
    return {
      ...plain(current, document, false),
      version,
      updatedAt: new Date().toISOString(),
    };
  }

  /**
   * Deletes a record (only at `expectedVersion` when given) and its stamps; false when nothing
   * was deleted (no such record, or another version).
   *
   * @throws `UNMAPPED_RESOURCE`.
   */
  async delete(resource: string, id: string, expectedVersion?: number): Promise<boolean> {
    this.#codec.checkResource(resource);
    return this.#repository.delete({ resource, id }, expectedVersion);
  }

  async #seal(
    resource: string,
    records: readonly { id: string; workspace: string | null; document: JsonObject }[],
  ): Promise<SealedRecord[]> {
    const encryptedPaths = this.#codec.encryptedPaths(resource);
    for (const record of records)
      this.#guard?.check(resource, record.id, record.document, encryptedPaths);
    const sealed = await this.#codec.seal(
      resource,
      records.map(({ id, workspace, document }) => ({
        id,
        document,
        ...(workspace === null ? {} : { workspace }),
      })),
    );
    if (sealed.length !== records.length)
      throw new Error(`the codec returned ${sealed.length} records for ${records.length}`);
    return sealed;
  }
}

function plain(
  stored: StoredRecord,
  document: JsonObject,
  stale: boolean,
  plaintextFields: readonly string[] = [],
): PlainRecord {
  return {
    resource: stored.resource,
    id: stored.id,
    subjectId: stored.subjectId,
    workspace: stored.workspace,
    document,
    version: stored.version,
    updatedAt: stored.updatedAt,
    stale,
    plaintextFields,
  };
}
