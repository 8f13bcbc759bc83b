// The two store backends the integration tests run against: each makes new empty stores on
// demand (a file in a directory of its own; a database on a PostgreSQL server started at the
// first store) and reads or writes a store's tables directly, as an older kms-envelope, an
// operator or an attacker would.
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import pg from "pg";
import { type PostgresServer, startPostgres } from "./postgres-server.js";

/** One backend: its stores, direct SQL on them, and the cleanup of both. */
export interface StoreBackend {
  readonly name: "sqlite" | "postgres";
  /** The URL of a new, empty store. */
  newStore(): Promise<string>;
  /** The rows of one query, on a connection of its own; parameters in the backend's dialect. */
  query<Row extends object>(url: string, sql: string, parameters?: unknown[]): Promise<Row[]>;
  /** Statements that return nothing, on a connection of its own. */
  exec(url: string, sql: string): Promise<void>;
  /** Removes every store made and stops the server, if one was started. */
  tearDown(): Promise<void>;
}

/** SQLite stores, each a file in a temporary directory. */
export interface SqliteBackend extends StoreBackend {
  readonly name: "sqlite";
  /** The database file of a store URL. */
  file(url: string): string;
  /** The bytes of a store's file and its WAL, as Latin-1 text: what a disk holds of it. */
  fileText(url: string): Promise<string>;
}

/** PostgreSQL stores, each a database on one temporary server. */
export interface PostgresBackend extends StoreBackend {
  readonly name: "postgres";
  /** The server, once a store was made. */
  readonly server: PostgresServer | undefined;
}

const SQLITE_SCHEME = "sqlite://";

function sqliteBackend(): SqliteBackend {
  let directory: Promise<string> | undefined;
  let stores = 0;
  const file = (url: string): string => url.slice(SQLITE_SCHEME.length);
  const withDatabase = <T>(url: string, use: (database: Database.Database) => T): T => {
    const database = new Database(file(url));
    try {
      return use(database);
    } finally {
      database.close();
    }
  };
  return {
    name: "sqlite",
    file,
    async fileText(url) {
      const texts = await Promise.all(
        ["", "-wal"].map((suffix) =>
          readFile(`${file(url)}${suffix}`).then(
            (bytes) => bytes.toString("latin1"),
            () => "",
          ),
        ),
      );
      return texts.join("\n");
    },
    async newStore() {
      directory ??= mkdtemp(join(tmpdir(), "kms-envelope-store-"));
      stores += 1;
      return `${SQLITE_SCHEME}${join(await directory, `store-${stores}.db`)}`;
    },
    async query<Row extends object>(url: string, sql: string, parameters: unknown[] = []) {
      return withDatabase(url, (database) => database.prepare(sql).all(...parameters) as Row[]);
    },
    async exec(url, sql) {
      withDatabase(url, (database) => database.exec(sql));
    },
    async tearDown() {
      if (directory !== undefined) await rm(await directory, { recursive: true, force: true });
    },
  };
}

function postgresBackend(): PostgresBackend {
  let server: Promise<PostgresServer> | undefined;
  let started: PostgresServer | undefined;
  const withClient = async <T>(url: string, use: (client: pg.Client) => Promise<T>): Promise<T> => {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      return await use(client);
    } finally {
      await client.end();
    }
  };
  return {
    name: "postgres",
    get server() {
      return started;
    },
    async newStore() {
      server ??= startPostgres().then((running) => {
        started = running;
        return running;
      });
      const running = await server;
      return running.tcpUrl(await running.createDatabase());
    },
    async query<Row extends object>(url: string, sql: string, parameters: unknown[] = []) {
      return withClient(url, async (client) => (await client.query(sql, parameters)).rows as Row[]);
    },
    async exec(url, sql) {
      await withClient(url, (client) => client.query(sql));
    },
    async tearDown() {
      await started?.stop();
    },
  };
}

/** Both backends, SQLite first. */
export function storeBackends(): [SqliteBackend, PostgresBackend] {
  return [sqliteBackend(), postgresBackend()];
}
