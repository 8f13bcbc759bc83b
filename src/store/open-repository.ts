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
 * Opens the repository a store URL names: by default creating and migrating its schema; with
 * `readOnly`, only a store that exists at this build's schema, refusing writes.
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
