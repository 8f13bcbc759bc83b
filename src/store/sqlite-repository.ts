/**
 * The embedded default backend: one SQLite file in WAL mode, so the application, rewrap and
 * export can use it from several processes at once (readers never block the writer).
 */
import { closeSync, existsSync, mkdirSync, openSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";
import { errorMessage, KmsEnvelopeError } from "../errors.js";
import type { FieldStamp, LookupToken } from "../fields/field-codec.js";
import {
  missingTokensQuery,
  plaintextCountQuery,
  recordsNotUnderQuery,
  TOKEN_KEY_ID_SQL,
} from "./pending-work-sql.js";
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

/** How long a write waits for another process's transaction before failing. */
const BUSY_TIMEOUT_MS = 10_000;

const RECORD_COLUMNS = "resource, id, subject_id, workspace, document, version, updated_at";

/**
 * Opens a SQLite store: read-write creates it when missing (mode 0600 in a 0700 directory) and
 * migrates it; read-only opens an existing file without writing to it (STORE_MISSING if absent).
 */
export function openSqliteRepository(path: string, options: OpenOptions = {}): RecordRepository {
  const readOnly = options.readOnly === true;
  if ((readOnly || options.existing === true) && !existsSync(path)) {
    throw new KmsEnvelopeError(
      "STORE_MISSING",
      `the SQLite store ${path} does not exist, and a command that only reads or rewrites records never creates one; check --store or --data-dir, or store records first (kms-envelope store put)`,
    );
  }
  let database: Database.Database;
  try {
    database = readOnly ? openExisting(path) : openForWriting(path);
  } catch (error) {
    if (error instanceof KmsEnvelopeError) throw error;
    throw new KmsEnvelopeError(
      "STORE_UNAVAILABLE",
      `cannot open the SQLite store ${path}: ${errorMessage(error)}; check the path and its permissions`,
      { cause: error },
    );
  }
  if (!readOnly) migrate(database, path);
  return new SqliteRepository(database);
}

function openForWriting(path: string): Database.Database {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  // The file holds ciphertexts and plain fields; SQLite gives its -wal and -shm files the same
  // mode as the database, so creating it 0600 first covers all three.
  closeSync(openSync(path, "a", 0o600));
  const database = new Database(path, { timeout: BUSY_TIMEOUT_MS });
  // WAL lets readers run beside a writer; FULL makes each commit durable before rewrap moves
  // on, so a power cut cannot undo rows an operator then retires the old key for.
  database.pragma("journal_mode = WAL");
  database.pragma("synchronous = FULL");
  database.pragma("foreign_keys = ON");
  // Freed space is zeroed rather than left holding old values: a replaced record's plaintext
  // or ciphertext under a retired key must not stay readable in the file (see scrub).
  database.pragma("secure_delete = ON");
  return database;
}

function openExisting(path: string): Database.Database {
  const database = new Database(path, {
    readonly: true,
    fileMustExist: true,
    timeout: BUSY_TIMEOUT_MS,
  });
  try {
    checkSchemaVersion(recordedSchemaVersion(database), path, true);
  } catch (error) {
    database.close();
    throw error;
  }
  return database;
}

/** The schema version a store records; 0 when it has no migrations table (never migrated). */
function recordedSchemaVersion(database: Database.Database): number {
  const table = database
    .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?")
    .get(MIGRATIONS_TABLE);
  if (table === undefined) return 0;
  const { current } = database
    .prepare(`SELECT coalesce(max(version), 0) AS current FROM ${MIGRATIONS_TABLE}`)
    .get() as { current: number };
  return current;
}

function migrate(database: Database.Database, path: string): void {
  database
    .transaction(() => {
      database.exec(
        `CREATE TABLE IF NOT EXISTS ${MIGRATIONS_TABLE} (version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at TEXT NOT NULL)`,
      );
      const current = recordedSchemaVersion(database);
      checkSchemaVersion(current, path, false);
      for (const migration of MIGRATIONS.filter((entry) => entry.version > current)) {
        database.exec(migration.sqlite);
        database
          .prepare(`INSERT INTO ${MIGRATIONS_TABLE} VALUES (?, ?, ?)`)
          .run(migration.version, migration.description, new Date().toISOString());
      }
    })
    // IMMEDIATE takes the write lock up front, so two processes starting together cannot both
    // read "version 0" and then both try to create the tables.
    .immediate();
}

class SqliteRepository implements RecordRepository {
  readonly backend = "sqlite";
  readonly #database: Database.Database;

  // Statements by SQL text: preparing is a parse and plan each time, which per record (every
  // stamp and token insert) was an eighth of rewrap's time. The texts are fixed or built from
  // field-map paths, so the cache stays small.
  readonly #statements = new Map<string, Database.Statement>();

  constructor(database: Database.Database) {
    this.#database = database;
  }

  #statement(sql: string): Database.Statement {
    let statement = this.#statements.get(sql);
    if (statement === undefined) {
      statement = this.#database.prepare(sql);
      this.#statements.set(sql, statement);
    }
    return statement;
  }

  async insert(resource: string, records: readonly NewRecord[]): Promise<StoredRecord[]> {
    for (const record of records) checkStamps(record.id, record.stamps, record.tokens);
    const updatedAt = new Date().toISOString();
    const rows: RecordRow[] = records.map((record) => ({
      resource,
      id: record.id,
      subject_id: record.subjectId,
      workspace: record.workspace,
      document: documentText(record.document),
      version: 1,
      updated_at: updatedAt,
    }));
    const insert = this.#statement(
      `INSERT INTO kmse_records (${RECORD_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)`,
    );
    let current: NewRecord | undefined;
    try {
      this.#database
        .transaction(() => {
          for (const [index, row] of rows.entries()) {
            current = records[index] as NewRecord;
            insert.run(
              row.resource,
              row.id,
              row.subject_id,
              row.workspace,
              row.document,
              row.version,
              row.updated_at,
            );
          }
          current = undefined;
          this.#insertStampRows(
            resource,
            records.map((record) => [record.id, record.stamps] as const),
          );
          this.#insertTokenRows(
            resource,
            records.map((record) => [record.id, record.tokens ?? []] as const),
          );
        })
        .immediate();
    } catch (error) {
      if ((error as { code?: string }).code === "SQLITE_CONSTRAINT_PRIMARYKEY") {
        throw alreadyExists(resource, current?.id);
      }
      throw error;
    }
    return rows.map((row, index) => toStoredRecord(row, (records[index] as NewRecord).stamps));
  }

  async get(key: RecordKey): Promise<StoredRecord | undefined> {
    return (await this.getMany(key.resource, [key.id]))[0];
  }

  async getMany(resource: string, ids: readonly string[]): Promise<StoredRecord[]> {
    if (ids.length === 0) return [];
    // One read transaction, so every record and its stamps come from the same snapshot.
    return this.#database.transaction(() => {
      const idList = JSON.stringify(ids);
      const rows = this.#statement(
        `SELECT ${RECORD_COLUMNS} FROM kmse_records WHERE resource = ? AND id IN (SELECT value FROM json_each(?))`,
      ).all(resource, idList) as RecordRow[];
      const stamps = stampsById(
        this.#statement(
          "SELECT record_id, path, route, provider, key_id FROM kmse_field_stamps WHERE resource = ? AND record_id IN (SELECT value FROM json_each(?)) ORDER BY record_id, path",
        ).all(resource, idList) as StampRow[],
      );
      return rows.map((row) => toStoredRecord(row, stamps.get(row.id) ?? []));
    })();
  }

  async replace(
    resource: string,
    replacements: readonly RecordReplacement[],
  ): Promise<ReplaceOutcome> {
    for (const replacement of replacements)
      checkStamps(replacement.id, replacement.stamps, replacement.tokens);
    if (replacements.length === 0) return { written: new Map(), conflicts: [] };
    // Stamps and tokens go as set statements over JSON arrays (json_each) instead of four
    // statements per record: per-statement overhead, not SQLite's work, bounded rewrap's pace.
    // The UPDATE stays one per record, since SQLite plans a join of the table with json_each
    // as a scan of the resource per batch.
    const update = this.#statement(
      "UPDATE kmse_records SET document = ?, version = version + 1, updated_at = ? WHERE resource = ? AND id = ? AND version = ?",
    );
    return this.#database
      .transaction(() => {
        const written = new Map<string, number>();
        const updatedAt = new Date().toISOString();
        for (const entry of replacements) {
          const { changes } = update.run(
            documentText(entry.document),
            updatedAt,
            resource,
            entry.id,
            entry.expectedVersion,
          );
          if (changes > 0) written.set(entry.id, entry.expectedVersion + 1);
        }
        const kept = replacements.filter((entry) => written.has(entry.id));
        const ids = JSON.stringify(kept.map((entry) => entry.id));
        this.#statement(
          "DELETE FROM kmse_field_stamps WHERE resource = ? AND record_id IN (SELECT value FROM json_each(?))",
        ).run(resource, ids);
        this.#statement(
          "DELETE FROM kmse_lookup_tokens WHERE resource = ? AND record_id IN (SELECT value FROM json_each(?))",
        ).run(resource, ids);
        this.#insertStampRows(
          resource,
          kept.map((entry) => [entry.id, entry.stamps] as const),
        );
        this.#insertTokenRows(
          resource,
          kept.map((entry) => [entry.id, entry.tokens ?? []] as const),
        );
        const conflicts = replacements
          .filter((entry) => !written.has(entry.id))
          .map((entry) => entry.id);
        return { written, conflicts };
      })
      .immediate();
  }

  async delete(key: RecordKey, expectedVersion?: number): Promise<boolean> {
    const result =
      expectedVersion === undefined
        ? this.#statement("DELETE FROM kmse_records WHERE resource = ? AND id = ?").run(
            key.resource,
            key.id,
          )
        : this.#statement(
            "DELETE FROM kmse_records WHERE resource = ? AND id = ? AND version = ?",
          ).run(key.resource, key.id, expectedVersion);
    return result.changes > 0;
  }

  async recordsWithToken(
    resource: string,
    path: string,
    tokens: readonly string[],
    page: { afterId: string; limit: number },
  ): Promise<string[]> {
    if (tokens.length === 0) return [];
    // Named, since without statistics SQLite prefers the primary key for the ORDER BY and reads
    // every token of the resource: a search then grows with the store (10 ms at 100,000 records)
    // instead of staying an index lookup.
    return (
      this.#statement(
        "SELECT DISTINCT record_id FROM kmse_lookup_tokens INDEXED BY kmse_lookup_tokens_token WHERE resource = ? AND path = ? AND token IN (SELECT value FROM json_each(?)) AND record_id > ? ORDER BY record_id LIMIT ?",
      ).all(resource, path, JSON.stringify(tokens), page.afterId, page.limit) as {
        record_id: string;
      }[]
    ).map((row) => row.record_id);
  }

  async resources(): Promise<string[]> {
    return (
      this.#statement("SELECT DISTINCT resource FROM kmse_records ORDER BY resource").all() as {
        resource: string;
      }[]
    ).map((row) => row.resource);
  }

  async countRecords(resource: string): Promise<number> {
    const { count } = this.#statement(
      "SELECT count(*) AS count FROM kmse_records WHERE resource = ?",
    ).get(resource) as { count: number };
    return count;
  }

  async recordIds(resource: string, afterId: string, limit: number): Promise<string[]> {
    return (
      this.#statement(
        "SELECT id FROM kmse_records WHERE resource = ? AND id > ? ORDER BY id LIMIT ?",
      ).all(resource, afterId, limit) as { id: string }[]
    ).map((row) => row.id);
  }

  async subjectRecords(
    subjectId: string,
    after: RecordKey | undefined,
    limit: number,
  ): Promise<SubjectPage> {
    const keys = this.#statement(
      "SELECT resource, id FROM kmse_records WHERE subject_id = ? AND (resource, id) > (?, ?) ORDER BY resource, id LIMIT ?",
    ).all(subjectId, after?.resource ?? "", after?.id ?? "", limit) as RecordKey[];
    return {
      records: await inKeyOrder(keys, (resource, ids) => this.getMany(resource, ids)),
      next: keys.length === limit ? keys[keys.length - 1] : undefined,
    };
  }

  async writerCounts(): Promise<WriterCount[]> {
    return this.#statement(
      "SELECT resource, path, provider, key_id AS keyId, count(*) AS fields FROM kmse_field_stamps GROUP BY resource, path, provider, key_id ORDER BY resource, path, provider, key_id",
    ).all() as WriterCount[];
  }

  async tokenCounts(): Promise<TokenCount[]> {
    return this.#statement(
      `SELECT resource, path, ${TOKEN_KEY_ID_SQL} AS keyId, count(*) AS tokens FROM kmse_lookup_tokens GROUP BY resource, path, keyId ORDER BY resource, path, keyId`,
    ).all() as TokenCount[];
  }

  async countMissingTokens(resource: string, path: string): Promise<number> {
    const query = missingTokensQuery("sqlite", resource, path);
    const { count } = this.#statement(query.sql).get(...query.parameters) as {
      count: number;
    };
    return count;
  }

  async countPlaintext(resource: string, path: string): Promise<number> {
    const query = plaintextCountQuery("sqlite", resource, path);
    const { count } = this.#statement(query.sql).get(...query.parameters) as {
      count: number;
    };
    return count;
  }

  async recordsNotUnder(
    resource: string,
    target: RewrapTarget,
    afterId: string,
    limit: number,
  ): Promise<string[]> {
    const query = recordsNotUnderQuery("sqlite", resource, target, { afterId, limit });
    return (this.#statement(query.sql).all(...query.parameters) as { record_id: string }[]).map(
      (row) => row.record_id,
    );
  }

  async countRecordsNotUnder(resource: string, target: RewrapTarget): Promise<number> {
    const query = recordsNotUnderQuery("sqlite", resource, target);
    const { count } = this.#statement(query.sql).get(...query.parameters) as {
      count: number;
    };
    return count;
  }

  async scrub(): Promise<ScrubOutcome> {
    // VACUUM copies the live rows into fresh pages, so old values left in free pages (written
    // before secure_delete was on, or by another tool) are gone; the checkpoint then moves the
    // new pages into the file and TRUNCATE empties the WAL that still held them on the way.
    this.#database.exec("VACUUM");
    const [result] = this.#database.pragma("wal_checkpoint(TRUNCATE)") as { busy: number }[];
    if (result?.busy === 0) return { complete: true };
    return {
      complete: false,
      advice:
        "another connection was still reading, so the write-ahead log could not be emptied; run rewrap again once the application is idle (it checkpoints again), or stop the application briefly",
    };
  }

  async close(): Promise<void> {
    if (this.#database.open) this.#database.close();
  }

  #insertTokenRows(
    resource: string,
    records: readonly (readonly [string, readonly LookupToken[]])[],
  ): void {
    const rows = records.flatMap(([id, tokens]) =>
      tokens.map(({ path, token }) => [id, path, token]),
    );
    if (rows.length === 0) return;
    this.#statement(
      "INSERT INTO kmse_lookup_tokens (resource, record_id, path, token) SELECT ?, value ->> 0, value ->> 1, value ->> 2 FROM json_each(?)",
    ).run(resource, JSON.stringify(rows));
  }

  #insertStampRows(
    resource: string,
    records: readonly (readonly [string, readonly FieldStamp[]])[],
  ): void {
    const rows = records.flatMap(([id, stamps]) =>
      stamps.map((stamp) => [id, stamp.path, stamp.route, stamp.provider, stamp.keyId]),
    );
    if (rows.length === 0) return;
    this.#statement(
      "INSERT INTO kmse_field_stamps (resource, record_id, path, route, provider, key_id) SELECT ?, value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4 FROM json_each(?)",
    ).run(resource, JSON.stringify(rows));
  }
}
