/**
 * The backend for several instances: a PostgreSQL database reached by connection string (see
 * postgres-connection.ts for the TLS policy). Inserts go as one statement per table through
 * unnest(); a batch of replacements (and, under a rewrap lease, the lease's bookkeeping) is one
 * statement, so one round trip and one commit, which the optimistic version check makes safe to
 * run beside the application.
 */
import { createHash } from "node:crypto";
import pg from "pg";
import { errorMessage, KmsEnvelopeError } from "../errors.js";
import type { FieldStamp, LookupToken } from "../fields/field-codec.js";
import {
  missingTokensQuery,
  plaintextCountQuery,
  recordsNotUnderQuery,
  TOKEN_KEY_ID_SQL,
} from "./pending-work-sql.js";
import { postgresSettings } from "./postgres-connection.js";
import {
  alreadyExists,
  checkStamps,
  documentText,
  inKeyOrder,
  type RecordRow,
  toStoredRecord,
} from "./record-rows.js";
import type {
  NewRecord,
  RecordKey,
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
  SubjectPage,
  TokenCount,
  WriterCount,
} from "./repository.js";
import { checkSchemaVersion, MIGRATIONS, MIGRATIONS_TABLE, type OpenOptions } from "./schema.js";

// Rows written before rewrap's queries first refresh the planner's statistics; the interval then
// doubles up to the last, so estimates stay within about 2x of the tables without an ANALYZE
// (tens of ms) every few batches.
const ANALYZE_FIRST = 5_000;
const ANALYZE_LAST = 80_000;

const RECORD_COLUMNS = "resource, id, subject_id, workspace, document, version, updated_at";
const RECORD_COLUMNS_OF_R = RECORD_COLUMNS.split(", ")
  .map((column) => `r.${column}`)
  .join(", ");
// The stamps of record `r` as a column of FieldStamp objects, so a record and its stamps are
// read by one statement (one snapshot, one round trip).
const STAMPS_OF_R = `(SELECT coalesce(json_agg(json_build_object('path', s.path, 'route', s.route, 'provider', s.provider, 'keyId', s.key_id) ORDER BY s.path), '[]')
  FROM kmse_field_stamps s WHERE s.resource = r.resource AND s.record_id = r.id) AS stamps`;
// Serialises migrations of instances that start together (any constant shared by all of them).
const MIGRATION_LOCK = 0x6b6d7365;
// deadlock_detected and serialization_failure: PostgreSQL rolled the transaction back and asks
// for it to be run again.
const RETRYABLE = new Set(["40P01", "40001"]);
const TRANSACTION_ATTEMPTS = 3;
// Serialises the planning of a shared rewrap run (with the target's hash as second key), so
// workers starting together share one run instead of planning two.
const REWRAP_PLAN_LOCK = 0x6b6d7372;
// The pending-work query lists every id for planning; its LIMIT must still be a number.
const EVERY_RECORD = 2_147_483_647;

type RawRecordRow = Omit<RecordRow, "updated_at"> & { updated_at: Date };

function recordRow(row: RawRecordRow): RecordRow {
  return { ...row, updated_at: row.updated_at.toISOString() };
}

function unavailable(description: string, error: unknown): KmsEnvelopeError {
  return new KmsEnvelopeError(
    "STORE_UNAVAILABLE",
    `cannot use the PostgreSQL store ${description}: ${errorMessage(error)}; check that the server is up, the credentials and the TLS settings`,
    { cause: error },
  );
}

/**
 * Connects to a PostgreSQL store: read-write migrates its schema (creating the tables in an
 * empty database); read-only only checks that the schema is there, and its sessions refuse
 * writes. `poolSize` bounds the connections.
 */
export async function openPostgresRepository(
  connectionString: string,
  options: OpenOptions & { poolSize?: number } = {},
): Promise<RecordRepository> {
  const settings = postgresSettings(connectionString);
  const pool = new pg.Pool({ ...settings.client, max: options.poolSize ?? 4 });
  // An idle client's error (server restart) must not crash the process; the next query reports it.
  pool.on("error", () => undefined);
  if (options.readOnly) {
    // Queued before any other query of the new client: a write that slipped into a read-only
    // command fails at the server instead of changing the store.
    pool.on("connect", (client) => {
      client.query("SET default_transaction_read_only = on").catch(() => undefined);
    });
  }
  const repository = new PostgresRepository(pool, settings.description);
  try {
    if (options.readOnly) await repository.checkSchema();
    else await repository.migrate();
  } catch (error) {
    await pool.end();
    throw error instanceof KmsEnvelopeError ? error : unavailable(settings.description, error);
  }
  return repository;
}

class PostgresRepository implements RecordRepository {
  readonly backend = "postgres";
  readonly #pool: pg.Pool;
  readonly #description: string;
  #closed = false;
  // Rows this instance wrote since it last refreshed the planner's statistics; starts high so
  // the first rewrap query of an instance refreshes them.
  #writtenSinceAnalyze = Number.POSITIVE_INFINITY;
  #analyzeAfter = ANALYZE_FIRST;
  #mayAnalyze = true;

  constructor(pool: pg.Pool, description: string) {
    this.#pool = pool;
    this.#description = description;
  }

  async migrate(): Promise<void> {
    await this.#transaction(async (client) => {
      await client.query("SELECT pg_advisory_xact_lock($1)", [MIGRATION_LOCK]);
      await client.query(
        `CREATE TABLE IF NOT EXISTS ${MIGRATIONS_TABLE} (version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL)`,
      );
      const current = await recordedSchemaVersion(client);
      checkSchemaVersion(current, this.#description, false);
      for (const migration of MIGRATIONS.filter((entry) => entry.version > current)) {
        await client.query(migration.postgres);
        await client.query(`INSERT INTO ${MIGRATIONS_TABLE} VALUES ($1, $2, now())`, [
          migration.version,
          migration.description,
        ]);
      }
    });
  }

  /** Read-only open: the schema must be there at this build's version; nothing is created. */
  async checkSchema(): Promise<void> {
    const current = await this.#transaction(recordedSchemaVersion, "BEGIN READ ONLY");
    checkSchemaVersion(current, this.#description, true);
  }

  async insert(resource: string, records: readonly NewRecord[]): Promise<StoredRecord[]> {
    for (const record of records) checkStamps(record.id, record.stamps, record.tokens);
    if (records.length === 0) return [];
    this.#writtenSinceAnalyze += records.length;
    try {
      return await this.#transaction(async (client) => {
        const { rows } = await client.query<RawRecordRow>(
          `INSERT INTO kmse_records (${RECORD_COLUMNS})
           SELECT $1, u.id, u.subject_id, u.workspace, u.document, 1, now()
           FROM unnest($2::text[], $3::text[], $4::text[], $5::text[]) AS u(id, subject_id, workspace, document)
           RETURNING ${RECORD_COLUMNS}`,
          [
            resource,
            records.map((record) => record.id),
            records.map((record) => record.subjectId),
            records.map((record) => record.workspace),
            records.map((record) => documentText(record.document)),
          ],
        );
        await insertStamps(
          client,
          resource,
          records.map((record) => [record.id, record.stamps] as const),
        );
        await insertTokens(
          client,
          resource,
          records.map((record) => [record.id, record.tokens ?? []] as const),
        );
        const byId = new Map(rows.map((row) => [row.id, recordRow(row)]));
        return records.map((record) =>
          toStoredRecord(byId.get(record.id) as RecordRow, record.stamps),
        );
      });
    } catch (error) {
      if ((error as { code?: string }).code === "23505") {
        // The detail names the key, e.g. "Key (resource, id)=(credentials, c-1) already exists."
        const id = /=\(.*?, (.*)\) already exists/.exec(
          (error as { detail?: string }).detail ?? "",
        )?.[1];
        throw alreadyExists(resource, id);
      }
      throw error;
    }
  }

  async get(key: RecordKey): Promise<StoredRecord | undefined> {
    return (await this.getMany(key.resource, [key.id]))[0];
  }

  async getMany(resource: string, ids: readonly string[]): Promise<StoredRecord[]> {
    if (ids.length === 0) return [];
    // One statement, so records and stamps come from one snapshot even while rewrap writes,
    // in one round trip instead of a transaction's four.
    const { rows } = await this.#query<RawRecordRow & { stamps: FieldStamp[] }>(
      `SELECT ${RECORD_COLUMNS_OF_R}, ${STAMPS_OF_R} FROM kmse_records r WHERE r.resource = $1 AND r.id = ANY($2::text[])`,
      [resource, ids],
    );
    return rows.map((row) => toStoredRecord(recordRow(row), row.stamps));
  }

  async replace(
    resource: string,
    replacements: readonly RecordReplacement[],
  ): Promise<ReplaceOutcome> {
    for (const replacement of replacements)
      checkStamps(replacement.id, replacement.stamps, replacement.tokens);
    if (replacements.length === 0) return { written: new Map(), conflicts: [] };
    this.#writtenSinceAnalyze += replacements.length;
    const { rows } = await this.#retried<WriteRow>(
      REPLACE_SQL,
      replaceParameters(resource, replacements),
    );
    return outcomeOf(replacements, rows[0] as WriteRow);
  }

  async delete(key: RecordKey, expectedVersion?: number): Promise<boolean> {
    const result =
      expectedVersion === undefined
        ? await this.#query("DELETE FROM kmse_records WHERE resource = $1 AND id = $2", [
            key.resource,
            key.id,
          ])
        : await this.#query(
            "DELETE FROM kmse_records WHERE resource = $1 AND id = $2 AND version = $3",
            [key.resource, key.id, expectedVersion],
          );
    return (result.rowCount ?? 0) > 0;
  }

  async recordsWithToken(
    resource: string,
    path: string,
    tokens: readonly string[],
    page: { afterId: string; limit: number },
  ): Promise<string[]> {
    if (tokens.length === 0) return [];
    const { rows } = await this.#query<{ record_id: string }>(
      "SELECT DISTINCT record_id FROM kmse_lookup_tokens WHERE resource = $1 AND path = $2 AND token = ANY($3::text[]) AND record_id > $4 ORDER BY record_id LIMIT $5",
      [resource, path, tokens, page.afterId, page.limit],
    );
    return rows.map((row) => row.record_id);
  }

  async resources(): Promise<string[]> {
    const { rows } = await this.#query<{ resource: string }>(
      "SELECT DISTINCT resource FROM kmse_records ORDER BY resource",
    );
    return rows.map((row) => row.resource);
  }

  async countRecords(resource: string): Promise<number> {
    const { rows } = await this.#query<{ count: number }>(
      "SELECT count(*)::int AS count FROM kmse_records WHERE resource = $1",
      [resource],
    );
    return rows[0]?.count ?? 0;
  }

  async recordIds(resource: string, afterId: string, limit: number): Promise<string[]> {
    const { rows } = await this.#query<{ id: string }>(
      "SELECT id FROM kmse_records WHERE resource = $1 AND id > $2 ORDER BY id LIMIT $3",
      [resource, afterId, limit],
    );
    return rows.map((row) => row.id);
  }

  async subjectRecords(
    subjectId: string,
    after: RecordKey | undefined,
    limit: number,
  ): Promise<SubjectPage> {
    const { rows } = await this.#query<RecordKey>(
      "SELECT resource, id FROM kmse_records WHERE subject_id = $1 AND (resource, id) > ($2, $3) ORDER BY resource, id LIMIT $4",
      [subjectId, after?.resource ?? "", after?.id ?? "", limit],
    );
    return {
      records: await inKeyOrder(rows, (resource, ids) => this.getMany(resource, ids)),
      next: rows.length === limit ? rows[rows.length - 1] : undefined,
    };
  }

  async writerCounts(): Promise<WriterCount[]> {
    const { rows } = await this.#query<WriterCount>(
      `SELECT resource, path, provider, key_id AS "keyId", count(*)::int AS fields FROM kmse_field_stamps
       GROUP BY resource, path, provider, key_id ORDER BY resource, path, provider, key_id`,
    );
    return rows;
  }

  async tokenCounts(): Promise<TokenCount[]> {
    const { rows } = await this.#query<TokenCount>(
      `SELECT resource, path, ${TOKEN_KEY_ID_SQL} AS "keyId", count(*)::int AS tokens FROM kmse_lookup_tokens
       GROUP BY resource, path, "keyId" ORDER BY resource, path, "keyId"`,
    );
    return rows;
  }

  async countMissingTokens(resource: string, path: string): Promise<number> {
    const query = missingTokensQuery("postgres", resource, path);
    const { rows } = await this.#pendingWorkQuery<{ count: number }>(query.sql, query.parameters);
    return rows[0]?.count ?? 0;
  }

  async countPlaintext(resource: string, path: string): Promise<number> {
    const query = plaintextCountQuery("postgres", resource, path);
    const { rows } = await this.#pendingWorkQuery<{ count: number }>(query.sql, query.parameters);
    return rows[0]?.count ?? 0;
  }

  async recordsNotUnder(
    resource: string,
    target: RewrapTarget,
    afterId: string,
    limit: number,
  ): Promise<string[]> {
    const query = recordsNotUnderQuery("postgres", resource, target, { afterId, limit });
    const { rows } = await this.#pendingWorkQuery<{ record_id: string }>(
      query.sql,
      query.parameters,
    );
    return rows.map((row) => row.record_id);
  }

  async countRecordsNotUnder(resource: string, target: RewrapTarget): Promise<number> {
    const query = recordsNotUnderQuery("postgres", resource, target);
    const { rows } = await this.#pendingWorkQuery<{ count: number }>(query.sql, query.parameters);
    return rows[0]?.count ?? 0;
  }

  async scrub(): Promise<ScrubOutcome> {
    // Deliberately no VACUUM from here: VACUUM FULL locks the table against the application for
    // its whole run, which is the operator's call to make, not a side effect of rewrap.
    return {
      complete: false,
      advice:
        "PostgreSQL keeps the replaced row versions (with their plaintext) in the table files until VACUUM reclaims them, and VACUUM FULL kmse_records rewrites the table so the old files are removed; its WAL archive and backups keep them until they expire",
    };
  }

  readonly sharedRewrap: SharedRewrapStore = {
    openRun: (resource, target, batchSize) => this.#openRun(resource, target, batchSize),
    claim: (runId, workerId, leaseMs) => this.#claim(runId, workerId, leaseMs),
    replaceLeased: (resource, lease, replacements, finish) =>
      this.#replaceLeased(resource, lease, replacements, finish),
    readLeased: (resource, target, lease, afterId, limit) =>
      this.#readLeased(resource, target, lease, afterId, limit),
    complete: (lease, failed) => this.#complete(lease, failed),
    release: async (lease) => {
      await this.#transaction((client) =>
        fence(client, lease, "worker_id = NULL, expires_at = NULL", []),
      );
    },
    runProgress: (runId) => this.#runProgress(runId),
    finishRun: async (runId) => {
      await this.#query(
        `UPDATE kmse_rewrap_runs SET finished_at = now() WHERE run_id = $1 AND finished_at IS NULL
         AND NOT EXISTS (SELECT 1 FROM kmse_rewrap_leases WHERE run_id = $1 AND done_at IS NULL)`,
        [runId],
      );
    },
  };

  async #openRun(resource: string, target: RewrapTarget, batchSize: number): Promise<RewrapRun> {
    const targetText = targetKey(target);
    await this.#refreshStatistics();
    return this.#transaction(async (client) => {
      await client.query("SELECT pg_advisory_xact_lock($1, hashtext($2))", [
        REWRAP_PLAN_LOCK,
        `${resource}\n${targetText}`,
      ]);
      const open = await client.query<RunRow>(
        `SELECT ${RUN_COLUMNS} FROM kmse_rewrap_runs WHERE resource = $1 AND target = $2 AND finished_at IS NULL`,
        [resource, targetText],
      );
      if (open.rows[0] !== undefined) return runOf(open.rows[0]);
      const created = await client.query<RunRow>(
        `INSERT INTO kmse_rewrap_runs (resource, target, generation, batches, records)
         SELECT $1, $2, coalesce(max(generation), 0) + 1, 0, 0 FROM kmse_rewrap_runs WHERE resource = $1 AND target = $2
         RETURNING ${RUN_COLUMNS}`,
        [resource, targetText],
      );
      const runId = (created.rows[0] as RunRow).run_id;
      // One pass over the pending ids (an index scan of the stamps), cut into id ranges of
      // batchSize records; a batch is then re-listed by whoever leases it, so records that
      // changed meanwhile are judged as they are then.
      const pending = recordsNotUnderQuery("postgres", resource, target, {
        afterId: "",
        limit: EVERY_RECORD,
      });
      const next = pending.parameters.length;
      await client.query(
        `WITH pending AS (${pending.sql}),
         numbered AS (SELECT record_id, (row_number() OVER (ORDER BY record_id) - 1) / $${next + 2} AS batch FROM pending),
         batches AS (SELECT batch, max(record_id) AS last_id, count(*)::int AS records FROM numbered GROUP BY batch)
         INSERT INTO kmse_rewrap_leases (run_id, batch, after_id, last_id, records)
         SELECT $${next + 1}, batch, coalesce(lag(last_id) OVER (ORDER BY batch), ''), last_id, records FROM batches`,
        [...pending.parameters, runId, batchSize],
      );
      const planned = await client.query<RunRow>(
        `UPDATE kmse_rewrap_runs AS r SET batches = l.batches, records = l.records,
           finished_at = CASE WHEN l.batches = 0 THEN now() END
         FROM (SELECT count(*)::int AS batches, coalesce(sum(records), 0)::int AS records FROM kmse_rewrap_leases WHERE run_id = $1) AS l
         WHERE r.run_id = $1 RETURNING r.run_id, r.generation, r.batches, r.records`,
        [runId],
      );
      return runOf(planned.rows[0] as RunRow);
    });
  }

  async #claim(runId: string, workerId: string, leaseMs: number): Promise<RewrapLease | undefined> {
    const { rows } = await this.#query<ClaimRow>(claimSql("$1", "$2", "$3", ""), [
      runId,
      workerId,
      leaseMs,
    ]);
    return leaseOf(rows[0], runId, workerId, leaseMs);
  }

  async #replaceLeased(
    resource: string,
    lease: RewrapLease,
    replacements: readonly RecordReplacement[],
    finish?: { failed: number; claimNext?: boolean },
  ): Promise<ReplaceOutcome & { done: boolean; next: RewrapLease | undefined }> {
    for (const replacement of replacements)
      checkStamps(replacement.id, replacement.stamps, replacement.tokens);
    this.#writtenSinceAnalyze += replacements.length;
    const { rows } = await this.#retried<WriteRow>(LEASED_REPLACE_SQL, [
      ...replaceParameters(resource, replacements),
      ...[lease.runId, lease.batch, lease.workerId, lease.generation, lease.leaseMs],
      ...[finish !== undefined, finish?.failed ?? 0, finish?.claimNext === true],
    ]);
    const row = rows[0] as WriteRow;
    if (row.fenced === 0) throw leaseLost(lease);
    return {
      ...outcomeOf(replacements, row),
      done: row.done === true,
      next: leaseOf(row.next ?? undefined, lease.runId, lease.workerId, lease.leaseMs),
    };
  }

  async #readLeased(
    resource: string,
    target: RewrapTarget,
    lease: RewrapLease,
    afterId: string,
    limit: number,
  ): Promise<StoredRecord[]> {
    const listing = recordsNotUnderQuery("postgres", resource, target, {
      afterId,
      throughId: lease.lastId,
      limit,
    });
    // Listed and read on one snapshot, so every listed record is there to read.
    const { rows } = await this.#pendingWorkQuery<RawRecordRow & { stamps: FieldStamp[] }>(
      `WITH listed AS (${listing.sql})
       SELECT ${RECORD_COLUMNS_OF_R}, ${STAMPS_OF_R}
       FROM listed l JOIN kmse_records r ON r.resource = $${listing.parameters.length + 1} AND r.id = l.record_id
       ORDER BY r.id`,
      [...listing.parameters, resource],
    );
    return rows.map((row) => toStoredRecord(recordRow(row), row.stamps));
  }

  async #complete(lease: RewrapLease, failed: number): Promise<void> {
    await this.#transaction((client) =>
      fence(client, lease, "done_at = clock_timestamp(), failed = failed + $5", [failed]),
    );
  }

  async #runProgress(runId: string): Promise<RewrapRunProgress> {
    const { rows } = await this.#query<RewrapRunProgress>(
      `SELECT r.batches, r.records,
         count(l.batch) FILTER (WHERE l.done_at IS NOT NULL)::int AS "batchesDone",
         count(l.batch) FILTER (WHERE l.done_at IS NULL AND l.expires_at > clock_timestamp())::int AS "batchesLeased",
         coalesce(sum(l.records) FILTER (WHERE l.done_at IS NOT NULL), 0)::int AS "recordsDone",
         coalesce(sum(l.rewrapped), 0)::int AS "recordsRewrapped",
         coalesce(sum(l.fields), 0)::int AS "fieldsRewrapped",
         coalesce(sum(l.conflicts), 0)::int AS "conflictsRetried",
         coalesce(sum(l.failed), 0)::int AS failed
       FROM kmse_rewrap_runs AS r LEFT JOIN kmse_rewrap_leases AS l ON l.run_id = r.run_id
       WHERE r.run_id = $1 GROUP BY r.batches, r.records`,
      [runId],
    );
    const progress = rows[0];
    if (progress === undefined)
      throw new KmsEnvelopeError(
        "STORE_CONFLICT",
        `rewrap run ${runId} is no longer in the store ${this.#description}; start rewrap again`,
      );
    return progress;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#pool.end();
  }

  async #query<Row extends pg.QueryResultRow>(
    sql: string,
    parameters: unknown[] = [],
  ): Promise<pg.QueryResult<Row>> {
    try {
      return await this.#pool.query<Row>(sql, parameters);
    } catch (error) {
      throw classify(error, this.#description);
    }
  }

  /** A statement that is its own transaction, run again when PostgreSQL asks for that. */
  async #retried<Row extends pg.QueryResultRow>(
    sql: string,
    parameters: unknown[],
  ): Promise<pg.QueryResult<Row>> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#pool.query<Row>(prepared(sql, parameters));
      } catch (error) {
        const code = (error as { code?: string }).code;
        if (code !== undefined && RETRYABLE.has(code) && attempt < TRANSACTION_ATTEMPTS) continue;
        throw classify(error, this.#description);
      }
    }
  }

  /** One of rewrap's queries over stamps, tokens and records, on fresh statistics. */
  async #pendingWorkQuery<Row extends pg.QueryResultRow>(
    sql: string,
    parameters: unknown[],
  ): Promise<pg.QueryResult<Row>> {
    await this.#refreshStatistics();
    try {
      return await this.#pool.query<Row>(prepared(sql, parameters));
    } catch (error) {
      throw classify(error, this.#description);
    }
  }

  /**
   * Keeps the planner's statistics in step with what rewrap writes: a backfill fills the token
   * table from empty, and with the statistics autovacuum took before it the planner chose plans
   * that read every remaining row per batch (quadratic: a 100,000-record backfill ran at 250
   * records/s). Best effort: a role that may not ANALYZE (not the tables' owner) is not asked
   * again, and the queries still run, only with older statistics.
   */
  async #refreshStatistics(): Promise<void> {
    if (!this.#mayAnalyze || this.#writtenSinceAnalyze < this.#analyzeAfter) return;
    if (Number.isFinite(this.#writtenSinceAnalyze))
      this.#analyzeAfter = Math.min(ANALYZE_LAST, 2 * this.#analyzeAfter);
    this.#writtenSinceAnalyze = 0;
    try {
      // Not the documents: no query filters on their statistics, and they are most of the work.
      await this.#pool.query(
        "ANALYZE kmse_records (resource, id, subject_id, version), kmse_field_stamps, kmse_lookup_tokens",
      );
    } catch {
      this.#mayAnalyze = false;
    }
  }

  async #transaction<T>(work: (client: pg.PoolClient) => Promise<T>, begin = "BEGIN"): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      let client: pg.PoolClient;
      try {
        client = await this.#pool.connect();
      } catch (error) {
        throw unavailable(this.#description, error);
      }
      try {
        await client.query(begin);
        const result = await work(client);
        await client.query("COMMIT");
        return result;
      } catch (error) {
        await client.query("ROLLBACK").catch(() => undefined);
        const code = (error as { code?: string }).code;
        if (code !== undefined && RETRYABLE.has(code) && attempt < TRANSACTION_ATTEMPTS) continue;
        throw classify(error, this.#description);
      } finally {
        client.release();
      }
    }
  }
}

const RUN_COLUMNS = "run_id, generation, batches, records";

interface RunRow {
  run_id: string;
  generation: number;
  batches: number;
  records: number;
}

interface LeaseRow {
  batch: number;
  after_id: string;
  last_id: string;
  generation: number;
}

const statementNames = new Map<string, string>();

/**
 * A statement run once per batch, as a named prepared statement: each connection parses it
 * once instead of every batch. PostgreSQL still plans it with the values given (a custom plan)
 * until a generic plan is estimated as cheap, which it then keeps for the connection.
 */
function prepared(text: string, values: unknown[]): pg.QueryConfig {
  let name = statementNames.get(text);
  if (name === undefined) {
    name = `kmse_${createHash("sha256").update(text).digest("hex").slice(0, 32)}`;
    statementNames.set(text, name);
  }
  return { name, text, values };
}

function runOf(row: RunRow): RewrapRun {
  return {
    runId: String(row.run_id),
    generation: row.generation,
    batches: row.batches,
    records: row.records,
  };
}

/**
 * What identifies a run's target: the writers, token versions and plaintext paths, in a fixed
 * order, so every worker toward the same target finds the same run.
 */
function targetKey(target: RewrapTarget): string {
  const byPath = (a: { path: string }, b: { path: string }) =>
    a.path < b.path ? -1 : a.path > b.path ? 1 : 0;
  return JSON.stringify({
    writers: [...target.writers]
      .sort(byPath)
      .map(({ path, provider, keyId }) => [path, provider, keyId]),
    tokens: [...(target.tokens ?? [])].sort(byPath).map(({ path, keyId }) => [path, keyId]),
    plaintext: [...(target.plaintext ?? [])].sort(),
  });
}

/**
 * Applies `set` to the lease row only while the lease is still the worker's (same generation,
 * not expired, batch not done), locking the row to the end of the transaction; otherwise
 * STORE_CONFLICT, and the caller's transaction is rolled back.
 */
async function fence(
  client: pg.PoolClient,
  lease: RewrapLease,
  set: string,
  parameters: unknown[],
): Promise<void> {
  const { rowCount } = await client.query(
    `UPDATE kmse_rewrap_leases SET ${set}
     WHERE run_id = $1 AND batch = $2 AND worker_id = $3 AND generation = $4
       AND done_at IS NULL AND expires_at > clock_timestamp()`,
    [lease.runId, lease.batch, lease.workerId, lease.generation, ...parameters],
  );
  if (rowCount === 0) throw leaseLost(lease);
}

function leaseLost(lease: RewrapLease): KmsEnvelopeError {
  return new KmsEnvelopeError(
    "STORE_CONFLICT",
    `worker ${lease.workerId} lost its lease on batch ${lease.batch} of rewrap run ${lease.runId} (it expired, and another worker may have taken the batch over); its writes for the batch were discarded, so set --lease longer than a batch takes`,
  );
}

/** The schema version a database records; 0 when it has no migrations table (never migrated). */
async function recordedSchemaVersion(client: pg.PoolClient): Promise<number> {
  const { rows } = await client.query<{ present: boolean }>(
    "SELECT to_regclass($1::text) IS NOT NULL AS present",
    [MIGRATIONS_TABLE],
  );
  if (rows[0]?.present !== true) return 0;
  const recorded = await client.query<{ current: number }>(
    `SELECT coalesce(max(version), 0) AS current FROM ${MIGRATIONS_TABLE}`,
  );
  return recorded.rows[0]?.current ?? 0;
}

// Errors of ours and constraint violations the caller interprets pass through; anything else
// from the driver (connection lost, server gone) is the store being unavailable.
function classify(error: unknown, description: string): unknown {
  if (error instanceof KmsEnvelopeError) return error;
  const code = (error as { code?: string }).code;
  if (code !== undefined && /^2[23]/.test(code)) return error;
  return unavailable(description, error);
}

/**
 * A batch of replacements as one statement, so a batch is one round trip and one commit. Its
 * parts run on one snapshot and see each other only through RETURNING, so stamps and tokens are
 * upserted, and deleted only at the paths a record no longer has, rather than all deleted and
 * inserted again (an insert would not see the delete): each part touches rows no other does. $1 resource; $2-$4 ids,
 * documents, expected versions; $5-$9 stamps; $10-$12 tokens.
 *
 * Under a lease, the lease row is locked first and the records are written only while the lease
 * is still the worker's (same generation, not expired, batch not done); it stays locked to the
 * commit, so no claim takes the batch over meanwhile. The lease is extended and credited, and
 * with $18 marked done when every replacement was written. $13-$17 the lease (run, batch,
 * worker, generation, ms), $18 finish, $19 records that failed to open.
 */
function replaceStatement(leased: boolean): string {
  const parts = leased
    ? [
        `fence AS (SELECT 1 FROM kmse_rewrap_leases WHERE run_id = $13 AND batch = $14 AND worker_id = $15
           AND generation = $16 AND done_at IS NULL AND expires_at > clock_timestamp() FOR UPDATE)`,
      ]
    : [
        // Locking the rows in key order before any is updated means two batch writers queue
        // behind each other instead of deadlocking. A lease's ids are no other worker's, so a
        // leased write skips it (locking is a write per row); a deadlock with an application's
        // write is still detected, and the statement run again.
        "locked AS (SELECT id FROM kmse_records WHERE resource = $1 AND id = ANY($2::text[]) ORDER BY id FOR UPDATE)",
      ];
  parts.push(
    // The version check is re-evaluated against a row another transaction changed meanwhile,
    // so a stale replacement updates nothing and becomes a conflict. id = ANY keeps the records
    // an index scan: joined to unnest() alone, the planner hashed a scan of the whole table.
    `written AS (
       UPDATE kmse_records AS r SET document = u.document, version = r.version + 1, updated_at = now()
       FROM unnest($2::text[], $3::text[], $4::int[]) AS u(id, document, version)
       WHERE r.resource = $1 AND r.id = ANY($2::text[]) AND r.id = u.id AND r.version = u.version
         AND ${leased ? "(SELECT count(*) FROM fence) = 1" : "(SELECT count(*) FROM locked) >= 0"}
       RETURNING r.id, r.version)`,
    `stamps AS (
       SELECT n.* FROM unnest($5::text[], $6::text[], $7::text[], $8::text[], $9::text[]) AS n(record_id, path, route, provider, key_id)
       WHERE n.record_id IN (SELECT id FROM written))`,
    `old_stamps AS (
       DELETE FROM kmse_field_stamps AS s WHERE s.resource = $1 AND s.record_id IN (SELECT id FROM written)
         AND (s.record_id, s.path) NOT IN (SELECT record_id, path FROM stamps))`,
    `new_stamps AS (
       INSERT INTO kmse_field_stamps (resource, record_id, path, route, provider, key_id)
       SELECT $1, record_id, path, route, provider, key_id FROM stamps
       ON CONFLICT (resource, record_id, path) DO UPDATE SET route = excluded.route, provider = excluded.provider, key_id = excluded.key_id)`,
    `tokens AS (
       SELECT n.* FROM unnest($10::text[], $11::text[], $12::text[]) AS n(record_id, path, token)
       WHERE n.record_id IN (SELECT id FROM written))`,
    `old_tokens AS (
       DELETE FROM kmse_lookup_tokens AS t WHERE t.resource = $1 AND t.record_id IN (SELECT id FROM written)
         AND (t.record_id, t.path) NOT IN (SELECT record_id, path FROM tokens))`,
    `new_tokens AS (
       INSERT INTO kmse_lookup_tokens (resource, record_id, path, token)
       SELECT $1, record_id, path, token FROM tokens
       ON CONFLICT (resource, record_id, path) DO UPDATE SET token = excluded.token)`,
  );
  if (leased)
    parts.push(
      `finished AS (SELECT $18::boolean AND EXISTS (SELECT 1 FROM fence)
         AND (SELECT count(*) FROM written) = cardinality($2::text[]) AS done)`,
      `credit AS (
         UPDATE kmse_rewrap_leases SET expires_at = clock_timestamp() + $17 * interval '1 millisecond',
           rewrapped = rewrapped + (SELECT count(*) FROM written),
           fields = fields + (SELECT count(*) FROM stamps),
           conflicts = conflicts + cardinality($2::text[]) - (SELECT count(*) FROM written),
           done_at = CASE WHEN (SELECT done FROM finished) THEN clock_timestamp() END,
           failed = failed + CASE WHEN (SELECT done FROM finished) THEN $19::int ELSE 0 END
         WHERE run_id = $13 AND batch = $14 AND EXISTS (SELECT 1 FROM fence)
         RETURNING done_at IS NOT NULL AS done)`,
      // With $20, a batch done also claims the worker's next (see claim), in the same commit.
      `next AS (${claimSql("$13", "$15", "$17", "AND batch <> $14 AND $20::boolean AND (SELECT done FROM finished)")})`,
    );
  const written =
    "(SELECT coalesce(json_agg(json_build_array(id, version)), '[]') FROM written) AS written";
  return `WITH ${parts.join(",\n")}
    SELECT ${written}${leased ? ", (SELECT count(*)::int FROM fence) AS fenced, (SELECT done FROM credit) AS done, (SELECT row_to_json(next) FROM next) AS next" : ""}`;
}

/** {@link RecordRepository.replace}. */
const REPLACE_SQL = replaceStatement(false);

/** {@link SharedRewrapStore.replaceLeased}. */
const LEASED_REPLACE_SQL = replaceStatement(true);

interface WriteRow {
  written: [string, number][];
  fenced?: number;
  done?: boolean | null;
  next?: ClaimRow | null;
}

// SKIP LOCKED: workers claiming together each get a different batch instead of queueing on the
// first; a lease a worker is committing under (row locked) is not taken over meanwhile. A batch
// given back (release) has no worker, so its next holder does not count it as taken over.
// `condition` narrows the batches claimed.
function claimSql(run: string, worker: string, ms: string, condition: string): string {
  return `UPDATE kmse_rewrap_leases AS l SET worker_id = ${worker}, generation = l.generation + 1,
      expires_at = clock_timestamp() + ${ms} * interval '1 millisecond'
    FROM (SELECT run_id, batch, worker_id AS previous FROM kmse_rewrap_leases
          WHERE run_id = ${run} ${condition} AND done_at IS NULL AND (expires_at IS NULL OR expires_at <= clock_timestamp())
          ORDER BY batch LIMIT 1 FOR UPDATE SKIP LOCKED) AS c
    WHERE l.run_id = c.run_id AND l.batch = c.batch
    RETURNING l.batch, l.after_id, l.last_id, l.generation, c.previous`;
}

interface ClaimRow extends LeaseRow {
  previous: string | null;
}

function leaseOf(
  row: ClaimRow | undefined,
  runId: string,
  workerId: string,
  leaseMs: number,
): RewrapLease | undefined {
  if (row === undefined) return undefined;
  return {
    runId,
    batch: row.batch,
    afterId: row.after_id,
    lastId: row.last_id,
    workerId,
    generation: row.generation,
    leaseMs,
    takenOver: row.previous !== null,
  };
}

function replaceParameters(
  resource: string,
  replacements: readonly RecordReplacement[],
): unknown[] {
  const stamps = replacements.flatMap((entry) =>
    entry.stamps.map((stamp) => ({ id: entry.id, stamp })),
  );
  const tokens = replacements.flatMap((entry) =>
    (entry.tokens ?? []).map((token) => ({ id: entry.id, token })),
  );
  return [
    resource,
    replacements.map((entry) => entry.id),
    replacements.map((entry) => documentText(entry.document)),
    replacements.map((entry) => entry.expectedVersion),
    stamps.map((row) => row.id),
    stamps.map((row) => row.stamp.path),
    stamps.map((row) => row.stamp.route),
    stamps.map((row) => row.stamp.provider),
    stamps.map((row) => row.stamp.keyId),
    tokens.map((row) => row.id),
    tokens.map((row) => row.token.path),
    tokens.map((row) => row.token.token),
  ];
}

function outcomeOf(replacements: readonly RecordReplacement[], row: WriteRow): ReplaceOutcome {
  const written = new Map(row.written);
  const conflicts = replacements.filter((entry) => !written.has(entry.id)).map((entry) => entry.id);
  return { written, conflicts };
}

async function insertStamps(
  client: pg.PoolClient,
  resource: string,
  records: readonly (readonly [string, readonly FieldStamp[]])[],
): Promise<void> {
  const rows = records.flatMap(([id, stamps]) => stamps.map((stamp) => ({ id, stamp })));
  if (rows.length === 0) return;
  await client.query(
    `INSERT INTO kmse_field_stamps (resource, record_id, path, route, provider, key_id)
     SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[])`,
    [
      resource,
      rows.map((row) => row.id),
      rows.map((row) => row.stamp.path),
      rows.map((row) => row.stamp.route),
      rows.map((row) => row.stamp.provider),
      rows.map((row) => row.stamp.keyId),
    ],
  );
}

async function insertTokens(
  client: pg.PoolClient,
  resource: string,
  records: readonly (readonly [string, readonly LookupToken[]])[],
): Promise<void> {
  const rows = records.flatMap(([id, tokens]) => tokens.map((token) => ({ id, token })));
  if (rows.length === 0) return;
  await client.query(
    `INSERT INTO kmse_lookup_tokens (resource, record_id, path, token)
     SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[])`,
    [
      resource,
      rows.map((row) => row.id),
      rows.map((row) => row.token.path),
      rows.map((row) => row.token.token),
    ],
  );
}
