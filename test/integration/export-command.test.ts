/**
 * `kms-envelope export --subject ID` against both backends: records sealed by the real field
 * layer (engine route, secretbox) come out exactly as stored, encrypted fields as ciphertext,
 * with no key or configuration given to the command at all.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { openFieldLayer } from "../../src/fields/open-field-layer.js";
import { PACKAGE_ROOT } from "../../src/package-info.js";
import { CredentialStore } from "../../src/store/credential-store.js";
import { EncryptedStore } from "../../src/store/encrypted-store.js";
import { openRepository } from "../../src/store/open-repository.js";
import type { ExportedRecord } from "../../src/store/subject-export.js";
import { runCli, runCliReadingOneLine, temporaryDirectory } from "../support/daemon-process.js";
import { type PostgresServer, startPostgres } from "../support/postgres-server.js";

const OBOT_MAP = join(PACKAGE_ROOT, "config/field-map-obot.yaml");
const USERS = "users.obot.obot.ai";
const SECRETS = ["ghs-token-of-ada", "ada@example.com", "refresh-of-ada", "bob-secret"];

describe("kms-envelope export --subject", () => {
  let directory: Awaited<ReturnType<typeof temporaryDirectory>>;
  let server: PostgresServer;
  const stores: { name: string; url: string }[] = [];

  before(async () => {
    directory = await temporaryDirectory();
    server = await startPostgres();
    stores.push(
      { name: "sqlite", url: `sqlite://${join(directory.path, "store.db")}` },
      { name: "postgres", url: server.tcpUrl(await server.createDatabase()) },
    );
    const configPath = join(directory.path, "encryption-configuration.yaml");
    await writeFile(
      configPath,
      `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: ["*.obot.obot.ai", credentials]
    providers:
      - secretbox: { keys: [{ name: key1, secret: "${randomBytes(32).toString("base64")}" }] }
`,
    );
    const codec = await openFieldLayer({
      fieldMapPath: OBOT_MAP,
      encryptionConfigPath: configPath,
    });
    try {
      for (const { url } of stores) {
        const repository = await openRepository(url);
        try {
          const store = new EncryptedStore({ repository, codec });
          await new CredentialStore(store, codec).put(
            {
              name: "github",
              context: "mcp",
              secrets: { token: "ghs-token-of-ada", refresh: "refresh-of-ada" },
            },
            { subjectId: "ada" },
          );
          await store.create(USERS, {
            id: "u-ada",
            subjectId: "ada",
            document: { email: "ada@example.com", username: "ada", plan: "pro" },
          });
          await store.create(USERS, {
            id: "u-bob",
            subjectId: "bob",
            document: { email: "bob@example.com", username: "bob-secret" },
          });
        } finally {
          await repository.close();
        }
      }
    } finally {
      await codec.close();
    }
  });
  after(async () => {
    await server?.stop();
    await directory?.remove();
  });

  for (const name of ["sqlite", "postgres"]) {
    test(`${name}: NDJSON of every record of the subject, encrypted fields exactly as stored`, async () => {
      const { url } = stores.find((entry) => entry.name === name) as { url: string };
      const result = await runCli(["export", "--subject", "ada", "--store", url]);
      assert.equal(result.code, 0, result.stderr);
      for (const secret of SECRETS) {
        assert.ok(!result.stdout.includes(secret), "no plaintext of an encrypted field");
      }
      const records = result.stdout
        .trimEnd()
        .split("\n")
        .map((line) => JSON.parse(line) as ExportedRecord);
      assert.deepEqual(
        records.map((record) => [record.resource, record.subjectId]),
        [
          ["credentials", "ada"],
          [USERS, "ada"],
        ],
      );
      const repository = await openRepository(url);
      try {
        for (const record of records) {
          const stored = await repository.get(record);
          assert.deepEqual(record.document, stored?.document, "the stored ciphertext, verbatim");
          assert.deepEqual(record.encryptedFields, stored?.stamps);
          assert.equal(record.version, stored?.version);
        }
      } finally {
        await repository.close();
      }
      const user = records[1] as ExportedRecord;
      assert.equal(user.document.plan, "pro", "plain fields are exported as they are");
      assert.match(
        Buffer.from(String(user.document.email), "base64").toString("latin1"),
        /^k8s:enc:secretbox:v1:key1:/,
        "the email is the engine's ciphertext",
      );
      assert.deepEqual(user.encryptedFields.map((field) => field.path).sort(), [
        "email",
        "username",
      ]);
    });
  }

  test("a reader that closes stdout early (| head -1) ends the export quietly with exit 0", async () => {
    const { url } = stores[0] as { url: string };
    const repository = await openRepository(url);
    try {
      await repository.insert(
        "notes",
        Array.from({ length: 3_000 }, (_, index) => ({
          id: `note-${String(index).padStart(5, "0")}`,
          subjectId: "prolific",
          workspace: null,
          document: { text: "a plain note ".repeat(20) },
          stamps: [],
        })),
      );
    } finally {
      await repository.close();
    }
    const result = await runCliReadingOneLine(["export", "--subject", "prolific", "--store", url]);
    assert.equal(result.stderr, "", "no write EPIPE or any other noise");
    assert.equal(result.code, 0);
    assert.match(result.stdout, /^\{"resource":"notes","id":"note-00000"/);
    assert.ok(result.stdout.length < 1_000_000, "it stopped instead of writing everything");
  });

  test("--format json --output FILE writes a 0600 file and refuses to overwrite one", async () => {
    const output = join(directory.path, "ada.json");
    const env = { KMS_ENVELOPE_STORE: stores[0]?.url ?? "" };
    const result = await runCli(
      ["export", "--subject", "ada", "--format", "json", "--output", output],
      env,
    );
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stderr, /^exported 2 records of subject ada to /);
    assert.equal((await stat(output)).mode & 0o777, 0o600);
    const parsed = JSON.parse(await readFile(output, "utf8")) as {
      subjectId: string;
      records: ExportedRecord[];
    };
    assert.equal(parsed.subjectId, "ada");
    assert.equal(parsed.records.length, 2);
    const again = await runCli(
      ["export", "--subject", "ada", "--format", "json", "--output", output],
      env,
    );
    assert.equal(again.code, 2);
    assert.match(again.stderr, /--output: .* exists \(choose another name\)/);
  });

  test("the default store is store.db under --data-dir, never created by export; a subject with nothing exports nothing", async () => {
    const dataDir = join(directory.path, "data");
    const missing = await runCli(["export", "--subject", "nobody", "--data-dir", dataDir]);
    assert.equal(missing.code, 2, missing.stderr);
    assert.equal(
      missing.stderr,
      `kms-envelope: the SQLite store ${join(dataDir, "store.db")} does not exist, and a command that only reads or rewrites records never creates one; check --store or --data-dir, or store records first (kms-envelope store put)\n`,
    );
    assert.equal(existsSync(dataDir), false, "export created nothing");

    await (await openRepository(`sqlite://${join(dataDir, "store.db")}`)).close();
    assert.equal((await stat(join(dataDir, "store.db"))).mode & 0o777, 0o600);
    assert.equal((await stat(dataDir)).mode & 0o777, 0o700);
    const empty = await runCli(["export", "--subject", "nobody", "--data-dir", dataDir]);
    assert.equal(empty.code, 0, empty.stderr);
    assert.equal(empty.stdout, "");
  });
});
