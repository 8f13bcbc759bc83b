/**
 * A temporary PostgreSQL cluster owned by the test run: initdb into a temporary directory,
 * started with pg_ctl on 127.0.0.1 (a free port) and on a Unix socket in that directory, with
 * TLS from a throw-away CA, torn down (and deleted) at the end. The server binaries come from
 * Debian's postgresql package (scripts/install-system-packages.sh installs it).
 *
 * PostgreSQL refuses to run as root, so when the tests run as root every server command runs as
 * the `postgres` user the Debian package creates (runuser), and the directory is handed to it.
 */
import { execFile, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, chownSync, existsSync, readdirSync, readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";

const run = promisify(execFile);
const SUPERUSER = "kmse";

/** A running temporary cluster. */
export interface PostgresServer {
  /** 127.0.0.1 port of the server. */
  readonly port: number;
  /** Directory of the Unix socket. */
  readonly socketDirectory: string;
  /** Path of the test CA certificate (PEM) that signed the server's certificate. */
  readonly caPath: string;
  /** Path of a CA certificate that did not sign it (for refusal tests). */
  readonly otherCaPath: string;
  /** Password of the superuser for TCP connections (scram-sha-256). */
  readonly password: string;
  /** A connection string over TCP to `database`, with extra query parameters. */
  tcpUrl(database: string, query?: Record<string, string>): string;
  /** A connection string over the Unix socket to `database`. */
  socketUrl(database: string): string;
  /** Creates an empty database and returns its name. */
  createDatabase(prefix?: string): Promise<string>;
  /** Stops the server and removes its directory. */
  stop(): Promise<void>;
}

/** The bin directory of the newest installed PostgreSQL, e.g. /usr/lib/postgresql/15/bin. */
export function postgresBinDirectory(): string {
  const root = "/usr/lib/postgresql";
  const versions = existsSync(root)
    ? readdirSync(root)
        .filter((name) => existsSync(join(root, name, "bin", "initdb")))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (versions[0] === undefined) {
    throw new Error(
      "no PostgreSQL server under /usr/lib/postgresql/*/bin: run `bash scripts/install-system-packages.sh`",
    );
  }
  return join(root, versions[0], "bin");
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() =>
        typeof address === "object" && address !== null
          ? resolve(address.port)
          : reject(new Error("no port")),
      );
    });
  });
}

// Under root, server commands run as `postgres`; otherwise as the current user.
function asServerUser(command: string, args: string[]): [string, string[]] {
  return process.getuid?.() === 0
    ? ["runuser", ["-u", "postgres", "--", command, ...args]]
    : [command, args];
}

function serverOwner(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const id = spawnSync("id", ["-u", "postgres"], { encoding: "utf8" });
  const gid = spawnSync("id", ["-g", "postgres"], { encoding: "utf8" });
  if (id.status !== 0) {
    throw new Error(
      "tests run as root but there is no postgres user to run the server as: install Debian's postgresql package",
    );
  }
  return { uid: Number(id.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

async function openssl(...args: string[]): Promise<void> {
  await run("openssl", args);
}

/** A CA and a server certificate for DNS:localhost only (so 127.0.0.1 fails verify-full). */
async function makeCertificates(directory: string): Promise<void> {
  const file = (name: string) => join(directory, name);
  const key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  for (const ca of ["ca", "other-ca"]) {
    await openssl(
      ...["req", "-x509", ...key, "-days", "2", "-subj", `/CN=kms-envelope test ${ca}`],
      ...["-addext", "basicConstraints=critical,CA:TRUE"],
      ...["-addext", "keyUsage=critical,keyCertSign,cRLSign"],
      ...["-keyout", file(`${ca}.key`), "-out", file(`${ca}.crt`)],
    );
  }
  await writeFile(
    file("server.ext"),
    "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost\n",
  );
  await openssl(
    ...["req", ...key, "-subj", "/CN=localhost"],
    ...["-keyout", file("server.key"), "-out", file("server.csr")],
  );
  await openssl(
    ...["x509", "-req", "-in", file("server.csr"), "-days", "2", "-sha256"],
    ...["-CA", file("ca.crt"), "-CAkey", file("ca.key"), "-set_serial", "0x01"],
    ...["-extfile", file("server.ext"), "-out", file("server.crt")],
  );
  // The server refuses a private key others can read.
  chmodSync(file("server.key"), 0o600);
}

/**
 * Starts a cluster; call stop() in an after() hook. Tests run it without fsync for speed;
 * `durable` keeps PostgreSQL's default durability (for benchmarks that compare backends).
 */
export async function startPostgres(options: { durable?: boolean } = {}): Promise<PostgresServer> {
  const bin = postgresBinDirectory();
  const directory = await mkdtemp(join(tmpdir(), "kms-envelope-pg-"));
  const data = join(directory, "data");
  const password = randomBytes(18).toString("base64url");
  const owner = serverOwner();
  const server = async (command: string, args: string[]): Promise<void> => {
    const [file, argv] = asServerUser(join(bin, command), args);
    try {
      await run(file, argv, { cwd: directory });
    } catch (error) {
      const log = existsSync(join(directory, "server.log"))
        ? readFileSync(join(directory, "server.log"), "utf8")
        : "";
      throw new Error(`${command} failed: ${(error as Error).message}\n${log}`);
    }
  };
  let started = false;
  const stopSync = () => {
    if (!started) return;
    started = false;
    const [file, argv] = asServerUser(join(bin, "pg_ctl"), ["-D", data, "-m", "immediate", "stop"]);
    spawnSync(file, argv, { stdio: "ignore" });
  };
  // If the test process ends without its after() hook, the server must not outlive it.
  process.once("exit", stopSync);
  try {
    await writeFile(join(directory, "password"), `${password}\n`);
    await makeCertificates(directory);
    if (owner !== undefined) {
      for (const name of ["", ...readdirSync(directory)]) {
        chownSync(join(directory, name), owner.uid, owner.gid);
      }
    }
    await server("initdb", [
      ...["-D", data, "-U", SUPERUSER, "--pwfile", join(directory, "password")],
      ...["--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync"],
    ]);
    const port = await freePort();
    const settings = [
      "listen_addresses=127.0.0.1",
      `port=${port}`,
      `unix_socket_directories=${directory}`,
      // A throw-away cluster: durability settings off for speed (the store's own durability is
      // PostgreSQL's business in production, not what these tests measure).
      ...(options.durable ? [] : ["fsync=off", "synchronous_commit=off", "full_page_writes=off"]),
      "ssl=on",
      `ssl_cert_file=${join(directory, "server.crt")}`,
      `ssl_key_file=${join(directory, "server.key")}`,
      "ssl_min_protocol_version=TLSv1.2",
      "max_connections=50",
    ];
    await server("pg_ctl", [
      ...["-D", data, "-l", join(directory, "server.log"), "-w", "-t", "60"],
      ...["-o", settings.map((setting) => `-c ${setting}`).join(" "), "start"],
    ]);
    started = true;
    const tcpUrl = (database: string, query: Record<string, string> = {}) => {
      const parameters = new URLSearchParams(query).toString();
      return `postgres://${SUPERUSER}:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}${parameters ? `?${parameters}` : ""}`;
    };
    const socketUrl = (database: string) =>
      `postgres:///${database}?host=${encodeURIComponent(directory)}&port=${port}&user=${SUPERUSER}`;
    return {
      port,
      socketDirectory: directory,
      caPath: join(directory, "ca.crt"),
      otherCaPath: join(directory, "other-ca.crt"),
      password,
      tcpUrl,
      socketUrl,
      async createDatabase(prefix = "kmse") {
        const name = `${prefix}_${randomBytes(6).toString("hex")}`;
        const client = new pg.Client({ connectionString: socketUrl("postgres") });
        await client.connect();
        try {
          await client.query(`CREATE DATABASE ${name}`);
        } finally {
          await client.end();
        }
        return name;
      },
      async stop() {
        process.removeListener("exit", stopSync);
        if (started) {
          started = false;
          await server("pg_ctl", ["-D", data, "-m", "fast", "-w", "stop"]);
        }
        await rm(directory, { recursive: true, force: true });
      },
    };
  } catch (error) {
    stopSync();
    process.removeListener("exit", stopSync);
    await rm(directory, { recursive: true, force: true });
    throw error;
  }
}
