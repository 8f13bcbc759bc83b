import { homedir } from "node:os";
import { join } from "node:path";
import { type Command, Option } from "commander";
import { ConfigError, errorMessage, KmsEnvelopeError } from "../errors.js";
import { openRepository, sqlitePath } from "../store/open-repository.js";
import type { RecordRepository } from "../store/repository.js";
import type { OpenOptions } from "../store/schema.js";

/** The store's file name inside the data directory. */
const STORE_FILE_NAME = "store.db";

/** Where the default SQLite store lives unless --data-dir or --store says otherwise. */
function defaultDataDirectory(): string {
  if (process.getuid?.() === 0) return "/var/lib/kms-envelope";
  return join(process.env.XDG_DATA_HOME || join(homedir(), ".local", "share"), "kms-envelope");
}

/** Flags shared by the commands that use the store. */
export interface StoreFlags {
  store?: string;
  dataDir?: string;
}

/** Adds --store and --data-dir (with their KMS_ENVELOPE_* variables) to a command. */
export function addStoreOptions(command: Command): Command {
  return command
    .addOption(
      new Option(
        "--store <url>",
        `sqlite:///PATH or postgres://USER:PASSWORD@HOST/DB?sslmode=verify-full&sslrootcert=CA.pem (default sqlite under --data-dir)`,
      ).env("KMS_ENVELOPE_STORE"),
    )
    .addOption(
      new Option("--data-dir <dir>", "directory of the default SQLite store").env(
        "KMS_ENVELOPE_DATA_DIR",
      ),
    );
}

/** The store URL the flags name. */
export function storeUrl(flags: StoreFlags): string {
  return (
    flags.store ?? `sqlite://${join(flags.dataDir ?? defaultDataDirectory(), STORE_FILE_NAME)}`
  );
}

/**
 * What the file system says when the SQLite file's place cannot hold one: a file where its
 * directory belongs, no permission, a name too long. No retry mends these; the flag must change.
 */
const UNUSABLE_PLACES = new Set([
  "EACCES",
  "EEXIST",
  "EISDIR",
  "ELOOP",
  "ENAMETOOLONG",
  "ENOTDIR",
  "EPERM",
  "EROFS",
  "SQLITE_CANTOPEN",
]);

/**
 * Opens the store the flags name; commands that only read pass `readOnly`. A SQLite store
 * whose place cannot hold one is an invocation error naming the flag that chose the place.
 */
export async function openStoreFromFlags(
  flags: StoreFlags,
  options: OpenOptions = {},
): Promise<RecordRepository> {
  const url = storeUrl(flags);
  try {
    return await openRepository(url, options);
  } catch (error) {
    const cause = error instanceof KmsEnvelopeError ? error.cause : undefined;
    const code = (cause as { code?: unknown } | undefined)?.code;
    const path = sqlitePath(url);
    if (path === undefined || typeof code !== "string" || !UNUSABLE_PLACES.has(code)) throw error;
    throw new ConfigError(
      flags.store === undefined ? "--data-dir" : "--store",
      `${path} cannot hold the SQLite store: ${errorMessage(cause)}`,
      "give a place this user can create and write the file in",
      { cause: error },
    );
  }
}
