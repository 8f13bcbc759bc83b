import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import pg from "pg";
import { openRepository } from "../../src/store/open-repository.js";
import { postgresSettings } from "../../src/store/postgres-connection.js";
import { type PostgresServer, startPostgres } from "../support/postgres-server.js";

describe("PostgreSQL store transport (real server, test CA, certificate for DNS:localhost)", () => {
  let server: PostgresServer;
  let database: string;
  before(async () => {
    server = await startPostgres();
    database = await server.createDatabase();
  });
  after(async () => {
    await server?.stop();
  });

  const localhostUrl = (query: Record<string, string>) =>
    server.tcpUrl(database, query).replace("@127.0.0.1:", "@localhost:");

  function unavailable(pattern: RegExp) {
    return (error: Error & { code?: string }) => {
      assert.equal(error.code, "STORE_UNAVAILABLE");
      assert.match(error.message, pattern);
      assert.ok(!error.message.includes(server.password), "the password is never in an error");
      return true;
    };
  }

  test("verify-full with the CA connects over TLS 1.2 or newer and the store works", async () => {
    const url = localhostUrl({ sslmode: "verify-full", sslrootcert: server.caPath });
    const client = new pg.Client(postgresSettings(url).client);
    await client.connect();
    try {
      const { rows } = await client.query<{ ssl: boolean; version: string }>(
        "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
      );
      assert.equal(rows[0]?.ssl, true, "the session is encrypted");
      assert.match(rows[0]?.version ?? "", /^TLSv1\.[23]$/);
    } finally {
      await client.end();
    }
    const repository = await openRepository(url);
    try {
      await repository.insert("credentials", [
        { id: "tls-1", subjectId: null, workspace: null, document: { secrets: "x" }, stamps: [] },
      ]);
      assert.equal((await repository.get({ resource: "credentials", id: "tls-1" }))?.version, 1);
    } finally {
      await repository.close();
    }
  });

  test("verify-full refuses a certificate that does not name the host", async () => {
    await assert.rejects(
      openRepository(
        server.tcpUrl(database, { sslmode: "verify-full", sslrootcert: server.caPath }),
      ),
      unavailable(/Hostname\/IP does not match certificate's altnames/),
    );
  });

  test("verify-ca accepts the same certificate by IP (chain checked, name not)", async () => {
    const repository = await openRepository(
      server.tcpUrl(database, { sslmode: "verify-ca", sslrootcert: server.caPath }),
    );
    await repository.close();
  });

  test("a server certificate from another CA is refused", async () => {
    await assert.rejects(
      openRepository(localhostUrl({ sslmode: "verify-full", sslrootcert: server.otherCaPath })),
      unavailable(/certificate|self.signed|verify/i),
    );
  });

  test("a wrong password is STORE_UNAVAILABLE without the password in the message", async () => {
    const url = server.tcpUrl(database).replace(encodeURIComponent(server.password), "wrong");
    await assert.rejects(openRepository(url), unavailable(/password authentication failed/));
  });

  test("the Unix socket needs no TLS", async () => {
    const repository = await openRepository(server.socketUrl(database));
    assert.equal(repository.backend, "postgres");
    await repository.close();
  });

  test("a server that is not there is STORE_UNAVAILABLE with what to check", async () => {
    const url = `postgres://kmse:pw@127.0.0.1:1/${database}`;
    await assert.rejects(
      openRepository(url),
      unavailable(
        /^cannot use the PostgreSQL store postgres:\/\/127\.0\.0\.1:1\/kmse_[0-9a-f]+: .*ECONNREFUSED.*; check that the server is up/,
      ),
    );
  });
});
