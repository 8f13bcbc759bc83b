/**
 * Rewrap: moves every stored encrypted field that is not under its current writer (the primary
 * key of the engine provider or of the daemon) onto it, and every lookup token not under the
 * daemon's primary master-key version (or missing) with it, while the application keeps running.
 *
 * Why it is safe to run at any time and to kill at any point:
 * - what needs work is found from stamps and lookup tokens (a query), so a rerun starts where a
 *   killed run stopped and a finished run finds nothing (idempotent);
 * - each batch is opened, resealed and written in one transaction, and each record is replaced
 *   only if its version is still the one read, so a record the application changed meanwhile
 *   is re-read rather than overwritten with old data;
 * - a record is only ever replaced by a complete, freshly sealed document, and the old key
 *   keeps decrypting until the operator retires it, so no field is lost or left undecryptable.
 */

import { hostname } from "node:os";
import { setTimeout as delay } from "node:timers/promises";
import { ConfigError, KmsEnvelopeError } from "../errors.js";
import type { FieldCodec } from "../fields/field-codec.js";
import type {
  PathWriter,
  RecordReplacement,
  RecordRepository,
  ReplaceOutcome,
  RewrapLease,
  RewrapRun,
  RewrapRunProgress,
  RewrapTarget,
  ScrubOutcome,
  SharedRewrapStore,
  StoredRecord,
  TokenCount,
  TokenVersion,
  WriterCount,
} from "./repository.js";
import {
  type OpenedStoredRecord,
  openStored,
  plaintextPaths,
  workspaceOf,
} from "./stored-fields.js";

/**
 * How rewrap reports progress (the CLI's terminal bar or log lines). Calls are synchronous and
 * per resource: `begin`, any number of `advance`, then `end`, also when the run fails.
 */
export interface RewrapProgress {
  /**
   * A resource's first pass starts.
   *
   * @param resource - The resource.
   * @param total - Records it will visit: those needing a rewrap, or with `openAll` every
   * record of the resource.
   */
  begin(resource: string, total: number): void;
  /**
   * A batch of the first pass was handled (rewrapped, skipped as failed, or found current).
   *
   * @param records - Records in the batch.
   */
  advance(records: number): void;
  /** The resource is done (or the run stopped). */
  end(): void;
}

/** What {@link rewrap} works on and how. */
export interface RewrapOptions {
  /** The store's records; written to unless `dryRun`. */
  readonly repository: RecordRepository;
  /** Opens and reseals the records; its current writers are the targets. */
  readonly codec: FieldCodec;
  /** Records per batch (read, opened, resealed, then written in one transaction); default 200. */
  readonly batchSize?: number;
  /** Count what would change from the stamps; open and write nothing (default false). */
  readonly dryRun?: boolean;
  /**
   * Only these resources (default: every resource with records); each must be one the codec
   * knows, so a mistyped name is refused instead of reporting nothing left to do.
   */
  readonly resources?: readonly string[];
  /**
   * Also open records whose stamps already name the current writer and rewrap those the codec
   * reports stale (after editing the field map or the EncryptionConfiguration by hand).
   * Default false; ignored by `dryRun`.
   */
  readonly openAll?: boolean;
  /**
   * Also encrypt values the store holds in the clear at encrypted paths (written before the
   * field map listed them), and end the run by scrubbing the overwritten values from the
   * database's files where the backend can (see {@link RecordRepository.scrub}). Default false:
   * such values are only counted. With `dryRun`, their records count in `recordsNeeding`.
   */
  readonly adoptPlaintext?: boolean;
  /** Where progress goes (default nowhere). */
  readonly progress?: RewrapProgress;
  /** Stops after the batch in flight (SIGINT/SIGTERM); the summary says it was interrupted. */
  readonly signal?: AbortSignal;
  /**
   * Work beside other workers on the same PostgreSQL store, possibly on other machines: the
   * first worker plans a run, every worker leases batches of it until none is left, and a
   * batch whose worker died is taken over once its lease expires. Ignored by `dryRun`.
   */
  readonly shared?: SharedRewrapOptions;
}

/** How this process takes part in a shared rewrap. */
export interface SharedRewrapOptions {
  /** Names this worker in the store's leases; unique per worker (default `<hostname>-<pid>`). */
  readonly workerId?: string;
  /**
   * How long a leased batch stays this worker's after the claim and after each write, in ms
   * (default 30 s): longer than a batch takes, shorter than you would wait for a dead worker.
   */
  readonly leaseMs?: number;
  /** Lease loops in this process, each its own worker (`<workerId>#<n>`); default 1. */
  readonly workers?: number;
}

/** What a shared run did, for one resource. */
export interface SharedRunSummary {
  /** The run in the store. */
  readonly runId: string;
  /** Which run toward this target it is (1 for the first). */
  readonly generation: number;
  /** This process's worker id. */
  readonly workerId: string;
  /** Batches this process leased. */
  batchesLeased: number;
  /** Of those, batches taken over from a worker whose lease expired. */
  leasesTakenOver: number;
  /** Batches this process lost to another worker before finishing them (writes discarded). */
  leasesLost: number;
  /** The run over every worker, when this process finished. */
  run: RewrapRunProgress;
}

/** One (path, old writer) group of fields. */
export interface StaleFields extends PathWriter {
  /** How many stored fields at this path this old writer wrote. */
  readonly fields: number;
}

/** Lookup tokens of one path under one older master-key version. */
export interface StaleTokens extends TokenVersion {
  /** How many stored tokens at this path this older version keys. */
  readonly tokens: number;
}

/** Values of one encrypted path that the store holds in the clear. */
export interface PlaintextFields {
  /** The encrypted field's path. */
  readonly path: string;
  /** How many records hold a plain value there. */
  readonly fields: number;
}

/** Records holding a lookup field but no token for it (the lookup was declared later). */
export interface MissingTokens {
  /** The lookup field's path. */
  readonly path: string;
  /** How many records hold a value there without a token. */
  readonly records: number;
}

/** What rewrap found and did for one resource. */
export interface ResourceSummary {
  /** The resource. */
  readonly resource: string;
  /** The writer each encrypted path should be under. */
  readonly current: readonly PathWriter[];
  /** Fields under another writer when the run started, by path and writer. */
  readonly staleFields: readonly StaleFields[];
  /** The master-key version each lookup field's tokens should be under (the primary). */
  readonly lookups: readonly TokenVersion[];
  /** Lookup tokens under an older version when the run started, by path and version. */
  readonly staleTokens: readonly StaleTokens[];
  /**
   * Lookup fields with values but no token when the run started (a `lookup` added to the field
   * map of a populated store), by path; rewrap computes them, so `find` then sees every record.
   */
  readonly missingTokens: readonly MissingTokens[];
  /**
   * Plain values at encrypted paths when the run started, by path (written before the field map
   * listed the path); counted whether or not the run adopts them.
   */
  readonly plaintextFields: readonly PlaintextFields[];
  /**
   * Records with at least one such field, a lookup field whose token is not under the primary
   * version, or (when adopting plaintext) a plain value at an encrypted path, when the run
   * started.
   */
  readonly recordsNeeding: number;
  /** Records replaced with freshly sealed documents. */
  recordsRewrapped: number;
  /** Fields sealed in those records (every encrypted field of a rewritten record counts). */
  fieldsRewrapped: number;
  /** Records changed by someone else between read and write, then re-read. */
  conflictsRetried: number;
  /**
   * Records that could not be opened (corrupt or under a key no longer loaded), by id, with the
   * error code (`UNKNOWN` for an error without one); skipped for the rest of the run.
   */
  readonly failed: { id: string; code: string }[];
  /** Plain values encrypted by this run. */
  plaintextEncrypted: number;
  /** Records still not under the current writer (fields or tokens) at the end. */
  remaining: number;
  /** Plain values still at encrypted paths at the end; 0 means no record needs the fallback. */
  plaintextLeft: number;
  /** With `shared`: the run this worker took part in, and what every worker did in it. */
  shared?: SharedRunSummary;
}

/** The result of a run. */
export interface RewrapSummary {
  /** The repository's backend (`sqlite`, `postgres`). */
  readonly backend: string;
  /** Whether this was a dry run (nothing written). */
  readonly dryRun: boolean;
  /** One summary per resource with encrypted fields, in the order handled. */
  readonly resources: ResourceSummary[];
  /** Stored fields of resources the field map no longer encrypts (left alone). */
  readonly unmapped: readonly WriterCount[];
  /**
   * How the run removed replaced values from the database's files: present after a run with
   * `adoptPlaintext` that was not interrupted.
   */
  scrub?: ScrubOutcome;
  /** True when `signal` stopped the run; later resources are missing from `resources`. */
  interrupted: boolean;
  /** Duration of the run in ms. */
  elapsedMs: number;
}

// A record that keeps changing under rewrap is re-read this many times per pass before it is
// left for the next pass; passes end when one moves nothing, or after MAX_PASSES if something
// (an instance still writing with the old key) keeps producing work: the summary then reports
// what is left and a later run picks it up.
const CONFLICT_RETRIES = 3;
const MAX_PASSES = 5;
// Failures that belong to one stored value; for anything else (daemon down, provider outage)
// the run stops, since no later batch would fare better.
const RECORD_FAILURES = new Set([
  "DECRYPTION_FAILED",
  "MALFORMED_CIPHERTEXT",
  "UNKNOWN_KEY_ID",
  "KEY_RETIRED",
  "KEY_ID_MISMATCH",
]);

/** True when a field (a stamp or a writer count) is under its path's current writer. */
function isCurrent(field: PathWriter, current: readonly PathWriter[]): boolean {
  const writer = current.find((entry) => entry.path === field.path);
  return (
    writer === undefined || (writer.provider === field.provider && writer.keyId === field.keyId)
  );
}

/** RewrapOptions with every default filled in. */
type RewrapSettings = RewrapOptions &
  Required<Pick<RewrapOptions, "batchSize" | "dryRun" | "progress">>;

type SharedSettings = Required<SharedRewrapOptions> & { readonly store: SharedRewrapStore };

const DEFAULT_LEASE_MS = 30_000;
const PROGRESS_EVERY_MS = 250;

/** Where a batch's replacements go, and the records it could not open. */
interface Lane {
  write(replacements: readonly RecordReplacement[]): Promise<ReplaceOutcome>;
  failed: number;
}

/** A lease's lane: its last write can also mark the batch done, saving a commit. */
interface LeasedLane extends Lane {
  /** Set before the batch's last listing is written. */
  last: boolean;
  /** Set once a write marked the batch done. */
  done: boolean;
}

/** The shared settings of a run that writes, checked before anything is read. */
function sharedSettings(options: RewrapOptions): SharedSettings | undefined {
  const shared = options.shared;
  if (shared === undefined || options.dryRun === true) return undefined;
  const store = options.repository.sharedRewrap;
  if (store === undefined)
    throw new ConfigError(
      "--shared",
      `the ${options.repository.backend} store cannot be shared by several rewrap workers`,
      "run a single rewrap without --shared, or keep the records in PostgreSQL",
    );
  if (options.openAll === true)
    throw new ConfigError(
      "--all",
      "opens every record, which is not planned into leased batches",
      "run rewrap --all without --shared",
    );
  const workers = shared.workers ?? 1;
  if (!Number.isInteger(workers) || workers < 1)
    throw new ConfigError(
      "--workers",
      `${workers} is not a whole number of at least 1`,
      "give 1 or more",
    );
  const leaseMs = shared.leaseMs ?? DEFAULT_LEASE_MS;
  if (!Number.isFinite(leaseMs) || leaseMs < 1)
    throw new ConfigError("--lease", `${leaseMs} ms is not a lease`, "give a duration such as 30s");
  const workerId = shared.workerId ?? `${hostname()}-${process.pid}`;
  if (workerId === "")
    throw new ConfigError("--worker-id", "is empty", "name the worker, or leave the default");
  return { store, workers, leaseMs, workerId };
}

const NO_PROGRESS: RewrapProgress = { begin() {}, advance() {}, end() {} };

/**
 * Moves every encrypted field of the store under its current writer (the primary master key
 * version, or the provider the EncryptionConfiguration lists first), in batches, each batch
 * one transaction; with `dryRun`, counts what it would do. Safe to run beside the application
 * (writes are optimistic) and to rerun after an interruption.
 *
 * @remarks
 * What needs work is found from the stamps, so nothing is decrypted to find it and a finished
 * run finds nothing (idempotent). A record is replaced only by a complete, freshly sealed
 * document and only if its version is still the one read; a record the application changed
 * meanwhile is re-read (up to 3 times per pass, up to 5 passes). A record that does not open
 * (`DECRYPTION_FAILED`, `MALFORMED_CIPHERTEXT`, `UNKNOWN_KEY_ID`, `KEY_RETIRED`,
 * `KEY_ID_MISMATCH`, or any error while the codec still answers) is listed in `failed` and
 * skipped; any other failure (daemon or plugin down, store unavailable) stops the run and
 * rejects. Resources with no encrypted fields in the field map are skipped.
 *
 * Values the store holds in the clear at encrypted paths (the field map listed the path after
 * they were written) are counted in every run and encrypted, with their lookup tokens, by a run
 * with `adoptPlaintext`, which then scrubs the replaced values from the database's files where
 * the backend can. Without it, a record that needs rewrap for another reason and holds such a
 * value is listed in `failed` (`MALFORMED_CIPHERTEXT`).
 *
 * @param given - What to rewrap and how; see {@link RewrapOptions}.
 * @returns What was found and done, per resource.
 * @throws `UNMAPPED_RESOURCE` for a name in `resources` the codec does not know, before anything
 * is read; `KMS_PLUGIN_FAILED` or `STORE_UNAVAILABLE` when the codec or the store fails.
 */
export async function rewrap(given: RewrapOptions): Promise<RewrapSummary> {
  const options: RewrapSettings = {
    ...given,
    batchSize: given.batchSize ?? 200,
    dryRun: given.dryRun ?? false,
    progress: given.progress ?? NO_PROGRESS,
  };
  const started = Date.now();
  const { repository, codec } = options;
  for (const resource of options.resources ?? []) codec.checkResource(resource);
  const shared = sharedSettings(options);
  const counts = await repository.writerCounts();
  const tokenCounts = await repository.tokenCounts();
  const resources = options.resources ?? (await repository.resources());
  const summary: RewrapSummary = {
    backend: repository.backend,
    dryRun: options.dryRun,
    resources: [],
    unmapped: counts.filter((count) => !codec.encryptedPaths(count.resource).includes(count.path)),
    interrupted: false,
    elapsedMs: 0,
  };
  for (const resource of resources) {
    const paths = codec.encryptedPaths(resource);
    if (paths.length === 0) continue;
    const current = await Promise.all(
      paths.map(async (path) => ({ path, ...(await codec.currentWriter(resource, path)) })),
    );
    // Lookup fields are field-service fields, whose current writer's key id is the daemon's
    // primary master-key version: the one their tokens should be under.
    const lookups = codec.lookupPaths(resource).map((path) => ({
      path,
      keyId: current.find((writer) => writer.path === path)?.keyId ?? "",
    }));
    // A dry run with adoptPlaintext counts the records the real run would visit.
    const target: RewrapTarget = {
      writers: current,
      tokens: lookups,
      plaintext: options.adoptPlaintext === true ? paths : [],
    };
    const plaintextFields = await countPlaintext(repository, resource, paths);
    const resourceSummary: ResourceSummary = {
      resource,
      current,
      staleFields: counts
        .filter((count) => count.resource === resource && paths.includes(count.path))
        .filter((count) => !isCurrent(count, current))
        .map(({ path, provider, keyId, fields }) => ({ path, provider, keyId, fields })),
      lookups,
      staleTokens: staleTokens(tokenCounts, resource, lookups),
      missingTokens: (
        await Promise.all(
          lookups.map(async ({ path }) => ({
            path,
            records: await repository.countMissingTokens(resource, path),
          })),
        )
      ).filter((entry) => entry.records > 0),
      plaintextFields,
      recordsNeeding: await repository.countRecordsNotUnder(resource, target),
      recordsRewrapped: 0,
      fieldsRewrapped: 0,
      conflictsRetried: 0,
      failed: [],
      plaintextEncrypted: 0,
      remaining: 0,
      plaintextLeft: plaintextFields.reduce((sum, entry) => sum + entry.fields, 0),
    };
    summary.resources.push(resourceSummary);
    if (options.dryRun) {
      resourceSummary.remaining = resourceSummary.recordsNeeding;
      continue;
    }
    const work = new ResourceRewrap(options, resourceSummary, target);
    await (shared === undefined ? work.run() : work.runShared(shared));
    resourceSummary.plaintextLeft = (await countPlaintext(repository, resource, paths)).reduce(
      (sum, entry) => sum + entry.fields,
      0,
    );
    if (options.signal?.aborted) {
      summary.interrupted = true;
      break;
    }
  }
  // Also after a run that found nothing left to adopt: an earlier one may have been stopped
  // between encrypting the values and scrubbing their old copies.
  if (options.adoptPlaintext === true && !options.dryRun && !summary.interrupted)
    summary.scrub = await repository.scrub();
  summary.elapsedMs = Date.now() - started;
  return summary;
}

/** Plain values at each encrypted path of a resource, for the paths that have any. */
async function countPlaintext(
  repository: RecordRepository,
  resource: string,
  paths: readonly string[],
): Promise<PlaintextFields[]> {
  const counts = await Promise.all(
    paths.map(async (path) => ({ path, fields: await repository.countPlaintext(resource, path) })),
  );
  return counts.filter((entry) => entry.fields > 0);
}

/** The tokens of a resource's lookup fields that are not under the version each should be. */
function staleTokens(
  counts: readonly TokenCount[],
  resource: string,
  lookups: readonly TokenVersion[],
): StaleTokens[] {
  return counts.flatMap(({ resource: countResource, path, keyId, tokens }) => {
    const primary = lookups.find((lookup) => lookup.path === path);
    return countResource === resource && primary !== undefined && primary.keyId !== keyId
      ? [{ path, keyId, tokens }]
      : [];
  });
}

/** The passes over one resource. */
class ResourceRewrap {
  readonly #options: RewrapSettings;
  readonly #summary: ResourceSummary;
  readonly #target: RewrapTarget;
  readonly #failed = new Set<string>();

  constructor(options: RewrapSettings, summary: ResourceSummary, target: RewrapTarget) {
    this.#options = options;
    this.#summary = summary;
    this.#target = target;
  }

  async run(): Promise<void> {
    const { repository, progress, signal } = this.#options;
    const { resource } = this.#summary;
    progress.begin(
      resource,
      this.#options.openAll
        ? await repository.countRecords(resource)
        : this.#summary.recordsNeeding,
    );
    try {
      for (let pass = 1; pass <= MAX_PASSES && !signal?.aborted; pass++) {
        // The first pass of --all visits every record; later passes (and every pass otherwise)
        // only those whose stamps name another writer.
        const everyRecord = this.#options.openAll === true && pass === 1;
        const before = this.#summary.recordsRewrapped;
        // The next batch is read while this one is opened, sealed and written: the store and
        // the crypto then overlap instead of taking turns. It lies past this batch's last id,
        // so this batch's writes cannot change which records it lists.
        let next = this.#listing(everyRecord, "");
        try {
          while (!signal?.aborted) {
            const { listed, rows } = await next;
            if (listed.length === 0) break;
            next = this.#listing(everyRecord, listed[listed.length - 1] as string);
            await this.#rewrapRows(rows, everyRecord, CONFLICT_RETRIES, this.#ownLane());
            // Later passes only retry what moved under us; the bar tracks the first.
            if (pass === 1) progress.advance(listed.length);
          }
        } finally {
          // Settled before the run goes on or the caller closes the store under it; its
          // failure, if this batch failed too, is not the one to report.
          await next.catch(() => undefined);
        }
        if (this.#summary.recordsRewrapped === before && !everyRecord) break;
      }
    } finally {
      progress.end();
    }
    this.#summary.remaining = await repository.countRecordsNotUnder(resource, this.#target);
  }

  /**
   * Takes part in the shared run toward this resource's target: leases batches until none is
   * left unleased, then waits for the batches other workers hold (taking over those whose lease
   * expires) until every batch is done.
   */
  async runShared(shared: SharedSettings): Promise<void> {
    const { repository, progress, batchSize } = this.#options;
    const { resource } = this.#summary;
    const run = await shared.store.openRun(resource, this.#target, batchSize);
    const summary: SharedRunSummary = {
      runId: run.runId,
      generation: run.generation,
      workerId: shared.workerId,
      batchesLeased: 0,
      leasesTakenOver: 0,
      leasesLost: 0,
      run: await shared.store.runProgress(run.runId),
    };
    this.#summary.shared = summary;
    progress.begin(resource, run.records);
    // The bar shows the run over every worker, from the store.
    let shown = 0;
    let shownAt = 0;
    const show = async (): Promise<RewrapRunProgress> => {
      shownAt = Date.now();
      const current = await shared.store.runProgress(run.runId);
      if (current.recordsDone > shown) {
        progress.advance(current.recordsDone - shown);
        shown = current.recordsDone;
      }
      summary.run = current;
      return current;
    };
    try {
      await Promise.all(
        Array.from({ length: shared.workers }, (_, index) =>
          this.#leaseLoop(
            shared,
            run,
            shared.workers === 1 ? shared.workerId : `${shared.workerId}#${index + 1}`,
            show,
            // Between batches, a query over every lease per batch would cost a round trip each
            // for a bar that moves no faster than the eye reads it.
            async () => {
              if (Date.now() - shownAt >= PROGRESS_EVERY_MS) await show();
            },
          ),
        ),
      );
      await show();
    } finally {
      progress.end();
    }
    await shared.store.finishRun(run.runId);
    this.#summary.remaining = await repository.countRecordsNotUnder(resource, this.#target);
  }

  async #leaseLoop(
    shared: SharedSettings,
    run: RewrapRun,
    workerId: string,
    show: () => Promise<RewrapRunProgress>,
    showBetweenBatches: () => Promise<void>,
  ): Promise<void> {
    const { signal } = this.#options;
    const summary = this.#summary.shared as SharedRunSummary;
    // Waiting for batches others hold: about as long as a batch takes, since that is when the
    // last ones are done (a fixed second left the first worker to finish idle for most of it
    // at the end of every run), and never so rarely that a dead worker's batch waits long
    // after its lease expires.
    let batchMs = 100;
    // A batch claimed by the write that finished the one before it.
    let claimed: RewrapLease | undefined;
    try {
      while (!signal?.aborted) {
        const lease = claimed ?? (await shared.store.claim(run.runId, workerId, shared.leaseMs));
        claimed = undefined;
        if (lease === undefined) {
          const current = await show();
          if (current.batchesDone >= current.batches) return;
          const pollMs = Math.max(20, Math.min(1_000, shared.leaseMs / 4, batchMs));
          await delay(pollMs, undefined, { signal }).catch(() => undefined);
          continue;
        }
        const started = Date.now();
        summary.batchesLeased++;
        if (lease.takenOver) summary.leasesTakenOver++;
        const lane: LeasedLane = {
          write: async (replacements) => {
            const outcome = await shared.store.replaceLeased(
              this.#summary.resource,
              lease,
              replacements,
              lane.last ? { failed: lane.failed, claimNext: !signal?.aborted } : undefined,
            );
            lane.done = outcome.done;
            claimed = outcome.next;
            return outcome;
          },
          failed: 0,
          last: false,
          done: false,
        };
        try {
          await this.#leased(shared.store, lease, lane);
          if (!lane.done) await shared.store.complete(lease, lane.failed);
        } catch (error) {
          // Lost to another worker after our lease expired: what we wrote before stands (those
          // records are current, so the new holder skips them), the rest is the new holder's.
          if (!(error instanceof KmsEnvelopeError && error.code === "STORE_CONFLICT")) {
            // This run is over for this worker: another takes the batch over now rather than
            // when the lease would have expired.
            await shared.store.release(lease).catch(() => undefined);
            throw error;
          }
          summary.leasesLost++;
        }
        batchMs = Date.now() - started;
        await showBetweenBatches();
      }
    } finally {
      // Stopped (signal, failure) holding a batch claimed for the next round: give it back, so
      // another worker starts on it now rather than when the lease expires.
      if (claimed !== undefined) await shared.store.release(claimed).catch(() => undefined);
    }
  }

  /** The records of a leased batch that need rewrap now, in sub-batches. */
  async #leased(store: SharedRewrapStore, lease: RewrapLease, lane: LeasedLane): Promise<void> {
    const { batchSize } = this.#options;
    let cursor = lease.afterId;
    for (;;) {
      const rows = await store.readLeased(
        this.#summary.resource,
        this.#target,
        lease,
        cursor,
        batchSize,
      );
      // A listing that reached the batch's last id is the batch's last: no query to find that
      // nothing is left, and its write can mark the batch done.
      lane.last =
        rows.length < batchSize || (rows[rows.length - 1] as StoredRecord).id === lease.lastId;
      await this.#rewrapRows(
        rows.filter((row) => !this.#failed.has(row.id)),
        false,
        CONFLICT_RETRIES,
        lane,
      );
      if (lane.last) return;
      cursor = (rows[rows.length - 1] as StoredRecord).id;
    }
  }

  /**
   * The records after `afterId` that the pass visits, at most a batch: their ids as listed, and
   * the rows of those not set aside as failed. Its failure is held until it is awaited, so a
   * listing read ahead does not fail the process while the batch before it still runs.
   */
  #listing(
    everyRecord: boolean,
    afterId: string,
  ): Promise<{ listed: string[]; rows: StoredRecord[] }> {
    const { repository, batchSize } = this.#options;
    const { resource } = this.#summary;
    const listing = (async () => {
      const listed = everyRecord
        ? await repository.recordIds(resource, afterId, batchSize)
        : await repository.recordsNotUnder(resource, this.#target, afterId, batchSize);
      return { listed, rows: await this.#read(listed.filter((id) => !this.#failed.has(id))) };
    })();
    listing.catch(() => undefined);
    return listing;
  }

  #ownLane(): Lane {
    const { repository } = this.#options;
    return {
      write: (replacements) => repository.replace(this.#summary.resource, replacements),
      failed: 0,
    };
  }

  async #batch(
    ids: readonly string[],
    everyRecord: boolean,
    retries: number,
    lane: Lane,
  ): Promise<void> {
    await this.#rewrapRows(await this.#read(ids), everyRecord, retries, lane);
  }

  /** The rows of `ids`, without a query when there are none. */
  async #read(ids: readonly string[]): Promise<StoredRecord[]> {
    return ids.length === 0 ? [] : this.#options.repository.getMany(this.#summary.resource, ids);
  }

  async #rewrapRows(
    rows: readonly StoredRecord[],
    everyRecord: boolean,
    retries: number,
    lane: Lane,
  ): Promise<void> {
    if (rows.length === 0) return;
    const { codec } = this.#options;
    const { resource, current, lookups } = this.#summary;
    const plaintext = this.#target.plaintext ?? [];
    // Stamps show whether a re-read record still needs its fields moved or encrypted; its
    // tokens are not read with it, so with lookup fields every listed record is resealed. That
    // costs a Seal call for a record the application rewrote meanwhile, never data: the record
    // as re-read is written back, and only at the version read.
    const needing =
      everyRecord || lookups.length > 0
        ? rows
        : rows.filter(
            (row) =>
              row.stamps.some((stamp) => !isCurrent(stamp, current)) ||
              plaintextPaths(row, plaintext).length > 0,
          );
    const opened = await this.#open(needing, lane);
    const toWrite = opened.filter(
      ({ row, record }) =>
        // With --all, the first pass leaves tokens to the next, which lists the records
        // whose tokens need moving rather than resealing every record with a lookup field.
        !everyRecord || record.stale || row.stamps.some((stamp) => !isCurrent(stamp, current)),
    );
    if (toWrite.length === 0) return;
    const sealed = await codec.seal(
      resource,
      toWrite.map(({ row, record }) => ({
        id: row.id,
        document: record.document,
        ...workspaceOf(row),
      })),
    );
    const outcome = await lane.write(
      sealed.map((record, index) => ({
        id: record.id,
        expectedVersion: (toWrite[index] as { row: StoredRecord }).row.version,
        document: record.document,
        stamps: record.stamps,
        // Replacing a record replaces its tokens: the freshly sealed record's are under the
        // primary version, as its values now are.
        tokens: record.tokens,
      })),
    );
    this.#summary.recordsRewrapped += outcome.written.size;
    for (const [index, record] of sealed.entries()) {
      if (!outcome.written.has(record.id)) continue;
      this.#summary.fieldsRewrapped += record.stamps.length;
      this.#summary.plaintextEncrypted += (
        toWrite[index] as { record: OpenedStoredRecord }
      ).record.plaintextFields.length;
    }
    if (outcome.conflicts.length > 0) {
      this.#summary.conflictsRetried += outcome.conflicts.length;
      // Re-read: the application's newer write decides; if it is already under the current
      // writer there is nothing left to do for it.
      if (retries > 0) await this.#batch(outcome.conflicts, everyRecord, retries - 1, lane);
    }
  }

  /** Opens rows as one batch, or one by one to set aside the rows that cannot be opened. */
  async #open(
    rows: readonly StoredRecord[],
    lane: Lane,
  ): Promise<{ row: StoredRecord; record: OpenedStoredRecord }[]> {
    const { codec } = this.#options;
    const { resource } = this.#summary;
    try {
      const opened = await openStored(codec, resource, rows, this.#options.adoptPlaintext === true);
      return rows.map((row, index) => ({ row, record: opened[index] as OpenedStoredRecord }));
    } catch (error) {
      // The daemon's field service reports a bad value as a failed call, like an outage; if the
      // codec still answers, the failure belongs to the records, otherwise the run stops.
      if (!isRecordFailure(error) && !(await this.#codecAnswers())) throw error;
      if (rows.length === 1) {
        this.#fail(rows[0] as StoredRecord, error);
        lane.failed++;
        return [];
      }
    }
    // Opening is all or nothing per batch: one bad value fails it, so retry row by row.
    const results: { row: StoredRecord; record: OpenedStoredRecord }[] = [];
    for (const row of rows) results.push(...(await this.#open([row], lane)));
    return results;
  }

  async #codecAnswers(): Promise<boolean> {
    const { resource, current } = this.#summary;
    try {
      await this.#options.codec.currentWriter(resource, (current[0] as PathWriter).path);
      return true;
    } catch {
      return false;
    }
  }

  #fail(row: StoredRecord, error: unknown): void {
    this.#failed.add(row.id);
    this.#summary.failed.push({
      id: row.id,
      code: error instanceof KmsEnvelopeError ? error.code : "UNKNOWN",
    });
  }
}

function isRecordFailure(error: unknown): error is KmsEnvelopeError {
  return error instanceof KmsEnvelopeError && RECORD_FAILURES.has(error.code);
}
