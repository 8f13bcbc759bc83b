import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/**
 * A throw-away certificate authority and a server certificate for 127.0.0.1, localhost and
 * `*.vault.azure.net` (the production vault host names, reached through the emulator's proxy).
 */
export interface TestTls {
  /** PEM of the test CA: what clients trust (core-rest-pipeline `tlsOptions.ca`). */
  readonly ca: string;
  /** PEM of the server certificate, signed by the CA. */
  readonly cert: string;
  /** PEM of the server's private key. */
  readonly key: string;
}

// The SAN covers every loopback name a test may use and, for clients tunnelled through the
// emulator's CONNECT proxy, every vault host name (a wildcard matches one label, as Key Vault's
// own certificate does). The CA is not the server certificate itself, so clients exercise a
// real chain (leaf + trust anchor), as with Key Vault.
const SERVER_EXTENSIONS = [
  "basicConstraints = critical, CA:FALSE",
  "keyUsage = critical, digitalSignature",
  "extendedKeyUsage = serverAuth",
  "subjectAltName = IP:127.0.0.1, DNS:localhost, DNS:*.vault.azure.net",
].join("\n");

let generated: Promise<TestTls> | undefined;

/**
 * Generates (once per process) a test CA and a server certificate with the `openssl` CLI —
 * node:crypto can read X.509 certificates but not issue them, and no extra npm package is
 * needed. Everything expires after two days.
 */
export function testTls(): Promise<TestTls> {
  generated ??= generate().catch((error: unknown) => {
    generated = undefined;
    throw error;
  });
  return generated;
}

async function generate(): Promise<TestTls> {
  const directory = await mkdtemp(join(tmpdir(), "akv-emulator-tls-"));
  const file = (name: string) => join(directory, name);
  // P-256 keys: generation takes milliseconds, where RSA would take a noticeable fraction of a second.
  const key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  try {
    await writeFile(file("server.ext"), `${SERVER_EXTENSIONS}\n`);
    await openssl(
      ...["req", "-x509", ...key, "-days", "2", "-subj", "/CN=kms-envelope test CA"],
      ...["-addext", "basicConstraints=critical,CA:TRUE"],
      ...["-addext", "keyUsage=critical,keyCertSign,cRLSign"],
      ...["-keyout", file("ca.key"), "-out", file("ca.crt")],
    );
    await openssl(
      ...["req", ...key, "-subj", "/CN=localhost"],
      ...["-keyout", file("server.key"), "-out", file("server.csr")],
    );
    await openssl(
      ...["x509", "-req", "-in", file("server.csr"), "-days", "2", "-sha256"],
      ...["-CA", file("ca.crt"), "-CAkey", file("ca.key"), "-set_serial", serialNumber()],
      ...["-extfile", file("server.ext"), "-out", file("server.crt")],
    );
    const [ca, cert, serverKey] = await Promise.all(
      ["ca.crt", "server.crt", "server.key"].map((name) => readFile(file(name), "utf8")),
    );
    return { ca: ca as string, cert: cert as string, key: serverKey as string };
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
}

async function openssl(...args: string[]): Promise<void> {
  try {
    await run("openssl", args, { timeout: 20_000 });
  } catch (error) {
    throw new Error(
      `the Azure Key Vault emulator needs the openssl CLI for its test certificates: ${(error as Error).message}`,
      { cause: error },
    );
  }
}

function serialNumber(): string {
  return `0x${randomBytes(8).toString("hex")}`;
}
