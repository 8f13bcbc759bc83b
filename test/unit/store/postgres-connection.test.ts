import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { ConnectionOptions } from "node:tls";
import { sqlitePath } from "../../../src/store/open-repository.js";
import { postgresSettings } from "../../../src/store/postgres-connection.js";

function invalid(pattern: RegExp) {
  return (error: Error & { code?: string }) =>
    error.code === "INVALID_CONFIG" && pattern.test(error.message);
}

describe("postgresSettings (transport policy)", () => {
  let directory: string;
  let caPath: string;
  before(async () => {
    directory = await mkdtemp(join(tmpdir(), "kms-envelope-pg-settings-"));
    caPath = join(directory, "ca.pem");
    await writeFile(caPath, "-----BEGIN CERTIFICATE-----\ntest\n-----END CERTIFICATE-----\n");
  });
  after(async () => {
    await rm(directory, { recursive: true, force: true });
  });

  test("a remote host defaults to verify-full: TLS 1.2 at least, certificate and name checked", () => {
    const settings = postgresSettings("postgres://app:secret@db.example.com:5432/app");
    assert.equal(settings.sslMode, "verify-full");
    const ssl = settings.client.ssl as ConnectionOptions;
    assert.equal(ssl.rejectUnauthorized, true);
    assert.equal(ssl.minVersion, "TLSv1.2");
    assert.equal(ssl.checkServerIdentity, undefined, "Node's host name check stays on");
    assert.equal(ssl.ca, undefined, "without sslrootcert the system CAs are used");
  });

  test("sslrootcert is read as the trust anchor and the TLS parameters leave the URL", () => {
    const settings = postgresSettings(
      `postgresql://app:secret@db.example.com/app?sslmode=verify-full&sslrootcert=${encodeURIComponent(caPath)}&application_name=kmse`,
    );
    const ssl = settings.client.ssl as ConnectionOptions;
    assert.match(String(ssl.ca), /BEGIN CERTIFICATE/);
    assert.equal(
      settings.client.connectionString,
      "postgresql://app:secret@db.example.com/app?application_name=kmse",
    );
  });

  test("verify-ca checks the chain but not the host name, as libpq does", () => {
    const settings = postgresSettings("postgres://db.example.com/app?sslmode=verify-ca");
    const ssl = settings.client.ssl as ConnectionOptions;
    assert.equal(ssl.rejectUnauthorized, true);
    assert.equal(ssl.minVersion, "TLSv1.2");
    assert.equal(typeof ssl.checkServerIdentity, "function");
  });

  test("loopback and Unix-socket connections may go without TLS; that is their default", () => {
    for (const url of [
      "postgres://app:pw@127.0.0.1:5432/app",
      "postgres://app:pw@localhost/app",
      "postgres://app:pw@[::1]:5432/app",
      "postgres:///app?host=/run/postgresql",
      "postgres://app:pw@127.0.0.1/app?sslmode=disable",
    ]) {
      const settings = postgresSettings(url);
      assert.equal(settings.sslMode, "disable", url);
      assert.equal(settings.client.ssl, false, url);
    }
  });

  test("modes that encrypt without verifying are refused with what to use instead", () => {
    for (const mode of ["require", "prefer", "allow", "no-verify"]) {
      assert.throws(
        () => postgresSettings(`postgres://db.example.com/app?sslmode=${mode}`),
        invalid(
          new RegExp(
            `^--store: sslmode=${mode} encrypts without verifying the server \\(use sslmode=verify-full with sslrootcert=CA\\.pem\\)$`,
          ),
        ),
      );
    }
  });

  test("sslmode=disable off loopback is refused", () => {
    assert.throws(
      () => postgresSettings("postgres://app:pw@10.0.0.5/app?sslmode=disable"),
      invalid(
        /^--store: sslmode=disable would send credentials and records to 10\.0\.0\.5 in the clear/,
      ),
    );
  });

  test("unknown modes, ssl=, bad schemes, unreadable files and stray cert parameters are refused", () => {
    assert.throws(
      () => postgresSettings("postgres://db.example.com/app?sslmode=verify_full"),
      invalid(/unknown sslmode verify_full/),
    );
    assert.throws(
      () => postgresSettings("postgres://db.example.com/app?ssl=true"),
      invalid(/instead of ssl=/),
    );
    assert.throws(() => postgresSettings("mysql://db/app"), invalid(/unsupported scheme mysql:/));
    assert.throws(() => postgresSettings("not a url"), invalid(/not a valid PostgreSQL URL/));
    assert.throws(
      () => postgresSettings("postgres://db.example.com/app?sslrootcert=/nonexistent/ca.pem"),
      invalid(/sslrootcert \/nonexistent\/ca\.pem cannot be read: ENOENT/),
    );
    assert.throws(
      () => postgresSettings(`postgres://127.0.0.1/app?sslrootcert=${caPath}`),
      invalid(/need sslmode=verify-full or verify-ca/),
    );
  });

  test("the description for logs carries no user, password or parameters", () => {
    const settings = postgresSettings(
      "postgres://app:hunter2@db.example.com:5433/app?sslmode=verify-full",
    );
    assert.equal(settings.description, "postgres://db.example.com:5433/app");
    assert.ok(!settings.description.includes("hunter2"), "no password");
  });
});

describe("sqlitePath", () => {
  test("sqlite:///absolute and sqlite:relative name files; other schemes are not SQLite", () => {
    assert.equal(
      sqlitePath("sqlite:///var/lib/kms-envelope/store.db"),
      "/var/lib/kms-envelope/store.db",
    );
    assert.equal(sqlitePath("sqlite:data/store.db"), join(process.cwd(), "data/store.db"));
    assert.equal(sqlitePath("postgres://db/app"), undefined);
  });

  test("a sqlite URL with a host or without a path is refused", () => {
    for (const url of ["sqlite://host/store.db", "sqlite:", "sqlite://"]) {
      assert.throws(
        () => sqlitePath(url),
        invalid(/names no SQLite file \(write sqlite:\/\/\/absolute\/path\.db/),
        url,
      );
    }
  });
});
