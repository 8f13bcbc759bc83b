/**
 * The backend for several instances: a PostgreSQL database reached by connection string (see
 * postgres-connection.ts for the TLS policy). Batches are written with one statement per table
 * through unnest(), inside transactions that the optimistic version check makes safe to run
 * beside the application.
 */
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
  type StampRow,
  stampsById,
  toStoredRecord,
} from "./record-rows.js";
import type {
  NewRecord,
  RecordKey,
  RecordReplacement,
  RecordRepository,
  ReplaceOutcome,
  RewrapTarget,
  ScrubOutcome,
  StoredRecord,
  SubjectPage,
  TokenCount,
  WriterCount,
} from "./repository.js";
import { checkSchemaVersion, MIGRATIONS, MIGRATIONS_TABLE, type OpenOptions } from "./schema.js";

// Rows written between two refreshes of the planner's statistics by rewrap's queries.
const ANALYZE_EVERY = 5_000;

const RECORD_COLUMNS = "resource, id, subject_id, workspace, document, version, updated_at";
// Serialises migrations of instances that start together (any constant shared by all of them).
const MIGRATION_LOCK = 0x6b6d7365;
// deadlock_detected and serialization_failure: PostgreSQL rolled the transaction back and asks
// for it to be run again.
const RETRYABLE = new Set(["40P01", "40001"]);
const TRANSACTION_ATTEMPTS = 3;

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
    // REPEATABLE READ: records and stamps come from one snapshot even while rewrap writes.
    return this.#transaction(async (client) => {
      const records = await client.query<RawRecordRow>(
        `SELECT ${RECORD_COLUMNS} FROM kmse_records WHERE resource = $1 AND id = ANY($2::text[])`,
        [resource, ids],
      );
      const stamps = await client.query<StampRow>(
        "SELECT record_id, path, route, provider, key_id FROM kmse_field_stamps WHERE resource = $1 AND record_id = ANY($2::text[]) ORDER BY record_id, path",
        [resource, ids],
      );
      const byId = stampsById(stamps.rows);
      return records.rows.map((row) => toStoredRecord(recordRow(row), byId.get(row.id) ?? []));
    }, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
  }

  async replace(
    resource: string,
    replacements: readonly RecordReplacement[],
  ): Promise<ReplaceOutcome> {
    for (const replacement of replacements)
      checkStamps(replacement.id, replacement.stamps, replacement.tokens);
    if (replacements.length === 0) return { written: new Map(), conflicts: [] };
    this.#writtenSinceAnalyze += replacements.length;
    return this.#transaction(async (client) => {
      // Locking the rows in key order first means two batch writers (two rewraps) queue behind
      // each other instead of deadlocking.
      await client.query(
        "SELECT 1 FROM kmse_records WHERE resource = $1 AND id = ANY($2::text[]) ORDER BY id FOR UPDATE",
        [resource, replacements.map((entry) => entry.id)],
      );
      // The version check in WHERE is re-evaluated against a row another transaction changed
      // meanwhile, so a stale replacement updates nothing and becomes a conflict.
      const { rows } = await client.query<{ id: string; version: number }>(
        `UPDATE kmse_records AS r SET document = u.document, version = r.version + 1, updated_at = now()
         FROM unnest($2::text[], $3::text[], $4::int[]) AS u(id, document, version)
         WHERE r.resource = $1 AND r.id = u.id AND r.version = u.version
         RETURNING r.id, r.version`,
        [
          resource,
          replacements.map((entry) => entry.id),
          replacements.map((entry) => documentText(entry.document)),
          replacements.map((entry) => entry.expectedVersion),
        ],
      );
      const written = new Map(rows.map((row) => [row.id, row.version]));
      const writtenIds = [...written.keys()];
      await client.query(
        "DELETE FROM kmse_field_stamps WHERE resource = $1 AND record_id = ANY($2::text[])",
        [resource, writtenIds],
      );
      await insertStamps(
        client,
        resource,
        replacements
          .filter((entry) => written.has(entry.id))
          .map((entry) => [entry.id, entry.stamps] as const),
      );
      await client.query(
        "DELETE FROM kmse_lookup_tokens WHERE resource = $1 AND record_id = ANY($2::text[])",
        [resource, writtenIds],
      );
      await insertTokens(
        client,
        resource,
        replacements
          .filter((entry) => written.has(entry.id))
          .map((entry) => [entry.id, entry.tokens ?? []] as const),
      );
      const conflicts = replacements
        .filter((entry) => !written.has(entry.id))
        .map((entry) => entry.id);
      return { written, conflicts };
    });
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

  /** One of rewrap's queries over stamps, tokens and records, on fresh statistics. */
  async #pendingWorkQuery<Row extends pg.QueryResultRow>(
    sql: string,
    parameters: unknown[],
  ): Promise<pg.QueryResult<Row>> {
    await this.#refreshStatistics();
    return this.#query<Row>(sql, parameters);
  }

  /**
   * Keeps the planner's statistics in step with what rewrap writes: a backfill fills the token
   * table from empty, and with the statistics autovacuum took before it the planner chose plans
   * that read every remaining row per batch (quadratic: a 100,000-record backfill ran at 250
   * records/s). Best effort: a role that may not ANALYZE (not the tables' owner) is not asked
   * again, and the queries still run, only with older statistics.
   */
  async #refreshStatistics(): Promise<void> {
    if (!this.#mayAnalyze || this.#writtenSinceAnalyze < ANALYZE_EVERY) return;
    this.#writtenSinceAnalyze = 0;
    try {
      await this.#pool.query("ANALYZE kmse_records, kmse_field_stamps, kmse_lookup_tokens");
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
