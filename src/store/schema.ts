/**
 * Schema migrations of the store, one entry per version, in both dialects. Each is applied once,
 * in a transaction, and recorded in kmse_schema_migrations; entries are never edited once
 * released, only appended.
 */

/** One schema step. */
export interface Migration {
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

/** Every migration, in version order. */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: "records with per-field writer stamps",
    sqlite: recordsAndStamps("sqlite"),
    postgres: recordsAndStamps("postgres"),
  },
];

/** The schema version this build of kms-envelope writes. */
export const SCHEMA_VERSION = MIGRATIONS.length;
