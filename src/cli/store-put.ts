/**
 * `store put`: NDJSON records into the store, sealed by the field layer on the way. Records go
 * in batches (one seal call and one transaction each), and whatever stops the input — a line
 * that is not a record, an id that exists without --replace, a refused plaintext credential,
 * the daemon or the database failing — stops it at a line: the records of every line before it
 * are stored and nothing from it on, so the error can say where to continue.
 */
import { KmsEnvelopeError } from "../errors.js";
import type { EncryptedStore, RecordInput } from "../store/encrypted-store.js";
import type { PlaintextGuard } from "../store/plaintext-guard.js";
import type { RecordRepository, StoredRecord } from "../store/repository.js";
import type { NumberedLine } from "./json-lines.js";
import { type RecordPlacement, recordFromLine } from "./store-input.js";

// One round trip to the daemon and one transaction per batch; memory stays bounded.
const BATCH = 100;

/** What `store put` was asked to do. */
export interface PutOptions {
  readonly resource: string;
  readonly placement: RecordPlacement;
  /** Replace records that exist (at the version read) instead of stopping at them. */
  readonly replace: boolean;
  readonly guard: PlaintextGuard;
}

/** Where the records go: the store seals and writes; the repository says what exists. */
interface PutTarget {
  readonly store: EncryptedStore;
  readonly repository: RecordRepository;
  /** The resource's encrypted fields, which the guard does not inspect. */
  readonly encryptedPaths: readonly string[];
}

/** How many records a run created and replaced. */
interface PutCounts {
  created: number;
  replaced: number;
}

interface PendingRecord {
  readonly line: number;
  readonly input: RecordInput;
}

class RecordImport {
  readonly counts: PutCounts = { created: 0, replaced: 0 };
  readonly #target: PutTarget;
  readonly #options: PutOptions;
  #pending: PendingRecord[] = [];
  readonly #pendingIds = new Set<string>();
  /** The first line whose record is not known to be stored: where an error stops the input. */
  #stopLine = 1;

  constructor(target: PutTarget, options: PutOptions) {
    this.#target = target;
    this.#options = options;
  }

  async add(line: NumberedLine): Promise<void> {
    const { resource, placement, guard } = this.#options;
    let input: RecordInput;
    try {
      input = recordFromLine(line, placement);
      guard.check(resource, input.id, input.document, this.#target.encryptedPaths);
    } catch (error) {
      await this.flush();
      this.#stopLine = line.number;
      throw error;
    }
    // A second line with the same id meets the first as an existing record, in line order.
    if (this.#pendingIds.has(input.id)) await this.flush();
    this.#pending.push({ line: line.number, input });
    this.#pendingIds.add(input.id);
    if (this.#pending.length === BATCH) await this.flush();
  }

  async flush(): Promise<void> {
    const batch = this.#pending;
    this.#pending = [];
    this.#pendingIds.clear();
    if (batch.length === 0) return;
    this.#stopLine = (batch[0] as PendingRecord).line;
    const { resource } = this.#options;
    const existing = new Map(
      (
        await this.#target.repository.getMany(
          resource,
          batch.map((entry) => entry.input.id),
        )
      ).map((record) => [record.id, record]),
    );
    // New records are created together; each existing one is replaced (or stops the input) in
    // its place, so everything before the line that fails is stored.
    let created: PendingRecord[] = [];
    for (const entry of batch) {
      const stored = existing.get(entry.input.id);
      if (stored === undefined) {
        created.push(entry);
        continue;
      }
      await this.#create(created);
      created = [];
      this.#stopLine = entry.line;
      await this.#replace(entry, stored);
    }
    await this.#create(created);
  }

  /** The error that stopped the input, saying what was stored and where to continue. */
  stopped(error: unknown): unknown {
    if (!(error instanceof KmsEnvelopeError)) return error;
    const stored = this.counts.created + this.counts.replaced;
    const line = this.#stopLine;
    return new KmsEnvelopeError(
      error.code,
      `${error.message}; ${
        stored === 0
          ? "nothing was stored"
          : `the records of the lines before line ${line} are stored (${stored}), nothing from line ${line} on: continue with tail -n +${line}`
      }`,
      { cause: error },
    );
  }

  async #create(entries: readonly PendingRecord[]): Promise<void> {
    if (entries.length === 0) return;
    this.#stopLine = (entries[0] as PendingRecord).line;
    await this.#target.store.createMany(
      this.#options.resource,
      entries.map((entry) => entry.input),
    );
    this.counts.created += entries.length;
  }

  async #replace(entry: PendingRecord, stored: StoredRecord): Promise<void> {
    const { resource, replace } = this.#options;
    const { id, subjectId, workspace, document } = entry.input;
    const where = `line ${entry.line}: ${resource} ${JSON.stringify(id)}`;
    if (!replace)
      throw new KmsEnvelopeError(
        "STORE_CONFLICT",
        `${where} exists already; pass --replace to replace it`,
      );
    // The repository replaces documents only; the owner and workspace of a record stay its own.
    const moved = [
      subjectId !== undefined && subjectId !== stored.subjectId ? "subject" : [],
      workspace !== undefined && workspace !== stored.workspace ? "workspace" : [],
    ].flat();
    if (moved.length > 0)
      throw new KmsEnvelopeError(
        "STORE_CONFLICT",
        `${where} exists with another ${moved.join(" and ")}, which --replace cannot change; store it under another id`,
      );
    await this.#target.store.update(resource, id, stored.version, document);
    this.counts.replaced++;
  }
}

/** Stores the records of `lines`; see the file comment for where a failure leaves the store. */
export async function putRecords(
  lines: AsyncIterable<NumberedLine>,
  target: PutTarget,
  options: PutOptions,
): Promise<PutCounts> {
  const run = new RecordImport(target, options);
  try {
    for await (const line of lines) await run.add(line);
    await run.flush();
  } catch (error) {
    throw run.stopped(error);
  }
  return run.counts;
}
