/**
 * Turns a PostgreSQL connection string into node-postgres settings under one transport policy:
 * off loopback the connection is TLS 1.2 or newer with the server certificate verified (the seed
 * platform's rule for database transport), and the libpq modes that encrypt without verifying
 * are refused rather than silently accepted.
 */
import { readFileSync } from "node:fs";
import type { ConnectionOptions } from "node:tls";
import type { ClientConfig } from "pg";
import { ConfigError } from "../errors.js";

/** The libpq sslmode values kms-envelope accepts. */
type SslMode = "disable" | "verify-ca" | "verify-full";

/** What a connection string resolves to. */
interface PostgresSettings {
  readonly client: ClientConfig;
  readonly sslMode: SslMode;
  /** The connection string without user, password or query, safe for logs. */
  readonly description: string;
}

// libpq's names for the TLS parameters; they are taken out of the string and applied here, so
// node-postgres's own looser interpretation of them never sees them.
const TLS_PARAMETERS = ["sslmode", "sslrootcert", "sslcert", "sslkey", "ssl"] as const;
const WEAK_MODES = new Set(["allow", "prefer", "require", "no-verify"]);

// Problems name the host at most, never the user or password of the connection string.
function invalid(problem: string, remedy: string): ConfigError {
  return new ConfigError("--store", problem, remedy);
}

function isLoopbackHost(host: string): boolean {
  return (
    host === "localhost" ||
    host === "[::1]" ||
    host === "::1" ||
    /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)
  );
}

function readPem(parameter: string, path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (error) {
    throw invalid(
      `${parameter} ${path} cannot be read: ${(error as NodeJS.ErrnoException).code ?? String(error)}`,
      "check the path and its permissions",
    );
  }
}

/**
 * Parses `postgres://user:password@host:port/database?sslmode=verify-full&sslrootcert=ca.pem`.
 * Unix-socket (`?host=/run/postgresql`) and loopback connections default to `disable`, every
 * other host to `verify-full`; `disable` off loopback and the unverified modes are refused.
 */
export function postgresSettings(connectionString: string): PostgresSettings {
  let url: URL;
  try {
    url = new URL(connectionString);
  } catch {
    throw invalid(
      "is not a valid PostgreSQL URL",
      "write postgres://USER:PASSWORD@HOST:PORT/DATABASE",
    );
  }
  if (url.protocol !== "postgres:" && url.protocol !== "postgresql:") {
    throw invalid(
      `has the unsupported scheme ${url.protocol}`,
      "write postgres:// or postgresql://",
    );
  }
  const socketDirectory = url.searchParams.get("host");
  const host = url.hostname;
  const local = (host === "" && socketDirectory?.startsWith("/") === true) || isLoopbackHost(host);
  const parameters = Object.fromEntries(
    TLS_PARAMETERS.map((name) => [name, url.searchParams.get(name) ?? undefined]),
  ) as Record<(typeof TLS_PARAMETERS)[number], string | undefined>;
  for (const name of TLS_PARAMETERS) url.searchParams.delete(name);

  if (parameters.ssl !== undefined) {
    throw invalid(
      "ssl= is not supported",
      "use sslmode=verify-full (with sslrootcert=CA.pem) instead of ssl=",
    );
  }
  const requested = parameters.sslmode ?? (local ? "disable" : "verify-full");
  if (WEAK_MODES.has(requested)) {
    throw invalid(
      `sslmode=${requested} encrypts without verifying the server`,
      "use sslmode=verify-full with sslrootcert=CA.pem",
    );
  }
  if (requested !== "disable" && requested !== "verify-ca" && requested !== "verify-full") {
    throw invalid(
      `unknown sslmode ${requested}`,
      "use verify-full, verify-ca or, on loopback, disable",
    );
  }
  const sslMode: SslMode = requested;
  if (sslMode === "disable" && !local) {
    throw invalid(
      `sslmode=disable would send credentials and records to ${host} in the clear`,
      "use sslmode=verify-full with sslrootcert=CA.pem",
    );
  }

  let ssl: ConnectionOptions | false = false;
  if (sslMode !== "disable") {
    ssl = {
      rejectUnauthorized: true,
      minVersion: "TLSv1.2",
      ...(parameters.sslrootcert === undefined || parameters.sslrootcert === "system"
        ? {}
        : { ca: readPem("sslrootcert", parameters.sslrootcert) }),
      ...(parameters.sslcert === undefined ? {} : { cert: readPem("sslcert", parameters.sslcert) }),
      ...(parameters.sslkey === undefined ? {} : { key: readPem("sslkey", parameters.sslkey) }),
      // verify-ca checks the chain but, as in libpq, not that the name matches the host.
      ...(sslMode === "verify-ca" ? { checkServerIdentity: () => undefined } : {}),
    };
  } else if (parameters.sslrootcert ?? parameters.sslcert ?? parameters.sslkey) {
    throw invalid(
      "sslrootcert, sslcert and sslkey need sslmode=verify-full or verify-ca",
      "set sslmode=verify-full, or drop them",
    );
  }

  const description = `${url.protocol}//${url.host}${url.pathname}${socketDirectory === null ? "" : ` (socket ${socketDirectory})`}`;
  return { client: { connectionString: url.toString(), ssl }, sslMode, description };
}
