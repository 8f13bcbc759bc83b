/**
 * Picks the backend from a store URL: `sqlite:///absolute/path.db` (or `sqlite:relative.db`)
 * for the embedded default, `postgres://…` / `postgresql://…` for a shared server.
 */
import { resolve } from "node:path";
import { ConfigError } from "../errors.js";
import { openPostgresRepository } from "./postgres-repository.js";
import type { RecordRepository } from "./repository.js";
import type { OpenOptions } from "./schema.js";
import { openSqliteRepository } from "./sqlite-repository.js";

/** The SQLite file of a `sqlite:` URL, or undefined for another scheme. */
export function sqlitePath(url: string): string | undefined {
  if (!url.startsWith("sqlite:")) return undefined;
  const rest = url.slice("sqlite:".length);
  // sqlite:///abs → "/abs"; sqlite://rel would name a host, which a file has not.
  const path = rest.startsWith("//") ? rest.slice(2) : rest;
  if (path === "" || (rest.startsWith("//") && !path.startsWith("/"))) {
    throw new ConfigError(
      "--store",
      `${url} names no SQLite file`,
      "write sqlite:///absolute/path.db or sqlite:relative/path.db",
    );
  }
  return resolve(path);
}

/**
 * Opens the repository a store URL names: by default creating and migrating its schema
 * (concurrent openers are serialised); with `readOnly`, only a store that exists at this
 * build's schema, refusing writes. Close it when done.
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
 * @param options - `readOnly`: open an existing store only, never create or migrate it.
 * @throws `INVALID_CONFIG` for a URL of another scheme or a refused TLS setting;
 * `STORE_MISSING` (read-only) when there is no store at the URL; `STORE_UNAVAILABLE` when the
 * database cannot be opened or reached, or its schema is newer than this kms-envelope knows.
 */
export async function openRepository(
  url: string,
  options: OpenOptions = {},
): Promise<RecordRepository> {
  const path = sqlitePath(url);
  if (path !== undefined) return openSqliteRepository(path, options);
  if (url.startsWith("postgres://") || url.startsWith("postgresql://")) {
    return openPostgresRepository(url, options);
  }
  // The URL is not repeated: whatever its scheme, it may carry a password.
  throw new ConfigError(
    "--store",
    "names no supported backend",
    "write sqlite:///PATH or postgres://USER:PASSWORD@HOST:PORT/DATABASE",
  );
}
