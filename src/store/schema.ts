import { KmsEnvelopeError } from "../errors.js";

/**
 * Schema migrations of the store, one entry per version, in both dialects. Each is applied once,
 * in a transaction, and recorded in kmse_schema_migrations; entries are never edited once
 * released, only appended.
 */

/** One schema step. */
interface Migration {
  readonly version: number;
  readonly description: string;
  readonly sqlite: string;
  readonly postgres: string;
}

/** The table that records which migrations a database has. */
export const MIGRATIONS_TABLE = "kmse_schema_migrations";

// Stamps live in their own table, keyed like the record, with an index that leads with the
// writer, so counting fields per writer and finding fields not under the current writer are
// index scans (issue 5: "what needs rewrapping is a query, not a scan of ciphertexts").
// Documents are kept as JSON text in both backends so they round-trip byte for byte.
const recordsAndStamps = (dialect: "sqlite" | "postgres"): string => {
  const withoutRowId = dialect === "sqlite" ? " WITHOUT ROWID" : "";
  const timestamp = dialect === "sqlite" ? "TEXT" : "TIMESTAMPTZ";
  // Keys compare byte-wise in both backends (SQLite's BINARY is UTF-8 byte order; PostgreSQL's
  // "C" collation likewise), so keyset pagination means the same thing everywhere.
  const key = dialect === "sqlite" ? "TEXT" : 'TEXT COLLATE "C"';
  return `
CREATE TABLE kmse_records (
  resource ${key} NOT NULL,
  id ${key} NOT NULL,
  subject_id ${key},
  workspace TEXT,
  document TEXT NOT NULL,
  version INTEGER NOT NULL CHECK (version > 0),
  updated_at ${timestamp} NOT NULL,
  PRIMARY KEY (resource, id)
)${withoutRowId};
CREATE INDEX kmse_records_subject ON kmse_records (subject_id, resource, id);
CREATE TABLE kmse_field_stamps (
  resource ${key} NOT NULL,
  record_id ${key} NOT NULL,
  path ${key} NOT NULL,
  route TEXT NOT NULL CHECK (route IN ('engine', 'field-service')),
  provider TEXT NOT NULL,
  key_id TEXT NOT NULL,
  PRIMARY KEY (resource, record_id, path),
  FOREIGN KEY (resource, record_id) REFERENCES kmse_records (resource, id) ON DELETE CASCADE
)${withoutRowId};
CREATE INDEX kmse_field_stamps_writer ON kmse_field_stamps (resource, path, provider, key_id, record_id);
`;
};

// Tokens (SPEC.md §2.1) live beside the records, one per record and lookup field (the primary
// version's; a search asks for every version's), and go with the record when it is deleted. The
// index leads with (resource, path, token), so a search is an index lookup whatever the table's size.
const lookupTokens = (dialect: "sqlite" | "postgres"): string => {
  const withoutRowId = dialect === "sqlite" ? " WITHOUT ROWID" : "";
  const key = dialect === "sqlite" ? "TEXT" : 'TEXT COLLATE "C"';
  return `
CREATE TABLE kmse_lookup_tokens (
  resource ${key} NOT NULL,
  record_id ${key} NOT NULL,
  path ${key} NOT NULL,
  token ${key} NOT NULL,
  PRIMARY KEY (resource, record_id, path),
  FOREIGN KEY (resource, record_id) REFERENCES kmse_records (resource, id) ON DELETE CASCADE
)${withoutRowId};
CREATE INDEX kmse_lookup_tokens_token ON kmse_lookup_tokens (resource, path, token, record_id);
`;
};

// Shared rewrap (several workers, possibly on several machines, on one PostgreSQL store): a run
// is the plan toward one target, cut into batches of id ranges that workers lease. A lease's
// generation grows with every claim, so a worker whose lease expired and was taken over cannot
// commit: its writes are fenced by the generation it claimed. Counts live on the leases and are
// written in the same transaction as the records, so the run's totals are exact across workers.
// SQLite has one writer at a time and no use for them.
const rewrapLeases = `
CREATE TABLE kmse_rewrap_runs (
  run_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  resource TEXT COLLATE "C" NOT NULL,
  target TEXT NOT NULL,
  generation INTEGER NOT NULL CHECK (generation > 0),
  batches INTEGER NOT NULL,
  records INTEGER NOT NULL,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  finished_at TIMESTAMPTZ,
  UNIQUE (resource, target, generation)
);
CREATE UNIQUE INDEX kmse_rewrap_runs_open ON kmse_rewrap_runs (resource, target) WHERE finished_at IS NULL;
CREATE TABLE kmse_rewrap_leases (
  run_id BIGINT NOT NULL REFERENCES kmse_rewrap_runs ON DELETE CASCADE,
  batch INTEGER NOT NULL,
  after_id TEXT COLLATE "C" NOT NULL,
  last_id TEXT COLLATE "C" NOT NULL,
  records INTEGER NOT NULL,
  worker_id TEXT,
  generation INTEGER NOT NULL DEFAULT 0,
  expires_at TIMESTAMPTZ,
  done_at TIMESTAMPTZ,
  rewrapped INTEGER NOT NULL DEFAULT 0,
  fields INTEGER NOT NULL DEFAULT 0,
  conflicts INTEGER NOT NULL DEFAULT 0,
  failed INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (run_id, batch)
);
CREATE INDEX kmse_rewrap_leases_open ON kmse_rewrap_leases (run_id, batch) WHERE done_at IS NULL;
`;

/** Every migration, in version order. */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: "records with per-field writer stamps",
    sqlite: recordsAndStamps("sqlite"),
    postgres: recordsAndStamps("postgres"),
  },
  {
    version: 2,
    description: "lookup tokens of searchable encrypted fields",
    sqlite: lookupTokens("sqlite"),
    postgres: lookupTokens("postgres"),
  },
  {
    version: 3,
    description: "runs and leases of shared rewrap",
    sqlite: "-- shared rewrap is PostgreSQL's alone",
    postgres: rewrapLeases,
  },
];

/** The schema version this build of kms-envelope writes. */
const SCHEMA_VERSION = MIGRATIONS.length;

/** How a store is opened: read-write creates and migrates it; read-only only reads what exists. */
export interface OpenOptions {
  /**
   * Open an existing store for reading: nothing is created or migrated and writes are refused,
   * so a command that only reads can never leave an empty store behind at a mistyped path.
   */
  readonly readOnly?: boolean;
  /**
   * Open read-write, but only a SQLite store that exists (it is still migrated): for commands
   * that rewrite stored records, which have nothing to do in a new file at a mistyped path.
   */
  readonly existing?: boolean;
}

/**
 * Refuses a recorded schema version this build cannot use on `store` (a path or a description
 * without credentials): a newer one always; for read-only use also none at all (STORE_MISSING)
 * or an older one, which only a read-write open migrates.
 */
export function checkSchemaVersion(current: number, store: string, readOnly: boolean): void {
  if (current > SCHEMA_VERSION) {
    throw new KmsEnvelopeError(
      "STORE_UNAVAILABLE",
      `the store ${store} has schema version ${current}, newer than this kms-envelope knows (${SCHEMA_VERSION}); upgrade kms-envelope`,
    );
  }
  if (!readOnly || current === SCHEMA_VERSION) return;
  if (current === 0) {
    throw new KmsEnvelopeError(
      "STORE_MISSING",
      `the store ${store} has no kms-envelope tables: nothing was ever stored there; check --store or --data-dir`,
    );
  }
  throw new KmsEnvelopeError(
    "STORE_UNAVAILABLE",
    `the store ${store} has schema version ${current}, older than this kms-envelope reads (${SCHEMA_VERSION}); open it once read-write (kms-envelope store put, rewrap, or the application) to migrate it`,
  );
}
