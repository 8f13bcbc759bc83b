/**
 * Picks the backend from a store URL: `sqlite:///absolute/path.db` (or `sqlite:relative.db`)
 * for the embedded default, `postgres://…` / `postgresql://…` for a shared server.
 */
import { resolve } from "node:path";
import { KmsEnvelopeError } from "../errors.js";
import { openPostgresRepository } from "./postgres-repository.js";
import type { RecordRepository } from "./repository.js";
import { openSqliteRepository } from "./sqlite-repository.js";

/** The SQLite file of a `sqlite:` URL, or undefined for another scheme. */
export function sqlitePath(url: string): string | undefined {
  if (!url.startsWith("sqlite:")) return undefined;
  const rest = url.slice("sqlite:".length);
  // sqlite:///abs → "/abs"; sqlite://rel would name a host, which a file has not.
  const path = rest.startsWith("//") ? rest.slice(2) : rest;
  if (path === "" || (rest.startsWith("//") && !path.startsWith("/"))) {
    throw new KmsEnvelopeError(
      "INVALID_CONFIG",
      `--store ${url}: expected sqlite:///absolute/path.db or sqlite:relative/path.db`,
    );
  }
  return resolve(path);
}

/**
 * Opens the repository a store URL names, creating and migrating its schema (concurrent openers
 * are serialised). Close it when done.
 *
 * @remarks
 * `sqlite:///absolute/path.db` or `sqlite:relative/path.db` (relative to the working
 * directory): a SQLite file in WAL mode with `synchronous=FULL`, created 0600 in a 0700
 * directory. `postgres://…` or `postgresql://…`: a pool of up to 4 connections; off loopback
 * TLS 1.2 or newer with the server certificate verified (`sslmode=verify-full`, the default, or
 * `verify-ca`, with `sslrootcert`); `require`, `prefer` and `allow` are refused; `disable` is
 * the default for loopback and Unix sockets and refused elsewhere. Passwords never appear in
 * errors or logs.
 *
 * @param url - The store URL.
 * @throws `INVALID_CONFIG` for a URL of another scheme or a refused TLS setting;
 * `STORE_UNAVAILABLE` when the database cannot be opened or reached, or its schema is newer
 * than this kms-envelope knows.
 */
export async function openRepository(url: string): Promise<RecordRepository> {
  const path = sqlitePath(url);
  if (path !== undefined) return openSqliteRepository(path);
  if (url.startsWith("postgres://") || url.startsWith("postgresql://")) {
    return openPostgresRepository(url);
  }
  throw new KmsEnvelopeError(
    "INVALID_CONFIG",
    "--store must be sqlite:///PATH or postgres://USER:PASSWORD@HOST:PORT/DATABASE",
  );
}
