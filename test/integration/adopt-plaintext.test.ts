import assert from "node:assert/strict";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { openFieldLayer } from "../../src/fields/open-field-layer.js";
import { EncryptedStore } from "../../src/store/encrypted-store.js";
import { openRepository } from "../../src/store/open-repository.js";
import {
  newMasterKey,
  runCli,
  suiteDaemon,
  temporaryDirectory,
} from "../support/daemon-process.js";
import { hasCode } from "../support/error-assertions.js";
import type { PostgresServer } from "../support/postgres-server.js";
import {
  type PostgresBackend,
  type SqliteBackend,
  type StoreBackend,
  storeBackends,
} from "../support/store-backends.js";

// Before encryption was switched on: the resource is listed, with no field, so it is stored in
// the clear on purpose.
const PLAIN_MAP = `apiVersion: kms-envelope/v1
kind: FieldMap
resources:
  - resource: people
`;

const FIELD_MAP = `apiVersion: kms-envelope/v1
kind: FieldMap
resources:
  - resource: people
    route: field-service
    fields:
      email: { type: string, lookup: [trim, lowercase] }
      name: string
`;

const PEOPLE = 30;
const person = (index: number) => ({
  id: `p-${String(index).padStart(2, "0")}`,
  email: `Adopted.${index}@Example.com`,
  name: `Adopted Person ${index}`,
  plan: "free",
});

async function allFiles(directory: string): Promise<string> {
  const entries = await readdir(directory, { recursive: true, withFileTypes: true });
  const texts = await Promise.all(
    entries
      .filter((entry) => entry.isFile())
      .map((entry) =>
        readFile(join(entry.parentPath, entry.name)).then((bytes) => bytes.toString("latin1")),
      ),
  );
  return texts.join("\n");
}

/** Every byte of the files where a backend keeps a store's table data, as text. */
async function tableFiles(backend: SqliteBackend | PostgresBackend, url: string): Promise<string> {
  if (backend.name === "sqlite") return backend.fileText(url);
  // Table files only: the README says the WAL keeps old row versions until it is recycled.
  return allFiles(join((backend.server as PostgresServer).socketDirectory, "data", "base"));
}

/** Gets a store's table data onto disk: SQLite has every commit in its file or WAL already. */
async function flush(backend: StoreBackend, url: string): Promise<void> {
  if (backend.name === "postgres") await backend.exec(url, "CHECKPOINT");
}

describe("adopting a store that still holds plaintext, through the daemon and the CLI", () => {
  const suite = suiteDaemon({ env: { ENCRYPTION_MASTER_KEY: newMasterKey() } });
  let directory: Awaited<ReturnType<typeof temporaryDirectory>>;
  let plainMap: string;
  let fieldMap: string;

  before(async () => {
    directory = await temporaryDirectory();
    plainMap = join(directory.path, "plain.yaml");
    fieldMap = join(directory.path, "fields.yaml");
    await writeFile(plainMap, PLAIN_MAP);
    await writeFile(fieldMap, FIELD_MAP);
  });
  after(() => directory?.remove());

  for (const backend of storeBackends()) {
    describe(backend.name, () => {
      after(() => backend.tearDown());

      test("plaintext rows are refused, read with --adopt-plaintext, counted, encrypted by rewrap --adopt-plaintext down to 0, then found by address", async () => {
        const url = await backend.newStore();
        const socket = suite.daemon.socketPath;
        const withFields = ["--store", url, "--fields", fieldMap, "--socket", socket];
        const people = Array.from({ length: PEOPLE }, (_, index) => person(index));
        const put = await runCli(
          [
            "store",
            "put",
            "--resource",
            "people",
            "--workspace",
            "ws-1",
            "--store",
            url,
            "--fields",
            plainMap,
          ],
          {},
          60_000,
          people.map((entry) => `${JSON.stringify(entry)}\n`).join(""),
        );
        assert.equal(put.code, 0, put.stderr);
        const repository = await openRepository(url);
        try {
          // Stored in the clear, as before encryption was switched on: the scan below sees it.
          await flush(backend, url);
          assert.ok(
            (await tableFiles(backend, url)).includes("Adopted.3@Example.com"),
            "held in the clear",
          );

          // With the field map listing email and name, a plain value is an error that says what to do.
          const get = await runCli(
            ["store", "get", "--resource", "people", "--id", "p-03", ...withFields],
            {},
            60_000,
          );
          assert.notEqual(get.code, 0);
          assert.match(get.stderr, /email holds a plain value.*--adopt-plaintext/);
          assert.doesNotMatch(get.stderr, /Adopted\.3@Example\.com/, "never the value");
          assert.equal(get.stderr.trim().split("\n").length, 1, get.stderr);

          const adoptedGet = await runCli(
            [
              "store",
              "get",
              "--resource",
              "people",
              "--id",
              "p-03",
              "--adopt-plaintext",
              ...withFields,
            ],
            {},
            60_000,
          );
          assert.equal(adoptedGet.code, 0, adoptedGet.stderr);
          assert.deepEqual(JSON.parse(adoptedGet.stdout), person(3));
          assert.match(
            adoptedGet.stderr,
            /holds email, name in the clear: run kms-envelope rewrap --adopt-plaintext/,
          );

          const layer = await openFieldLayer({ fieldMapPath: fieldMap, daemonSocket: socket });
          try {
            const store = new EncryptedStore({ repository, codec: layer });
            await assert.rejects(store.read("people", "p-00"), hasCode("MALFORMED_CIPHERTEXT"));
            const adopting = new EncryptedStore({ repository, codec: layer, adoptPlaintext: true });
            const read = await adopting.read("people", "p-00");
            assert.deepEqual(read?.plaintextFields, ["email", "name"]);
          } finally {
            await layer.close();
          }

          // The dry run counts plaintext fields per resource and says work is left.
          const dry = await runCli(
            ["rewrap", "--dry-run", "--exit-code", ...withFields],
            {},
            60_000,
          );
          assert.equal(dry.code, 1, dry.stderr);
          assert.match(
            dry.stdout,
            new RegExp(
              `^ {2}plaintext: email ${PEOPLE}, name ${PEOPLE} at the start, ${PEOPLE * 2} plaintext fields left$`,
              "m",
            ),
          );
          assert.match(dry.stdout, new RegExp(`^${PEOPLE * 2} plaintext fields left$`, "m"));
          if (backend.name === "postgres") assert.match(dry.stdout, /VACUUM FULL kmse_records/);

          // Without --adopt-plaintext rewrap encrypts nothing and says what to run.
          const refused = await runCli(["rewrap", ...withFields], {}, 60_000);
          assert.equal(refused.code, 1);
          assert.match(
            refused.stderr,
            /60 fields are still stored in the clear; run rewrap --adopt-plaintext/,
          );

          const adopted = await runCli(
            ["rewrap", "--adopt-plaintext", "--batch-size", "7", ...withFields],
            {},
            120_000,
          );
          assert.equal(adopted.code, 0, adopted.stderr);
          assert.match(
            adopted.stdout,
            new RegExp(`${PEOPLE * 2} encrypted, 0 plaintext fields left`),
          );
          assert.match(adopted.stdout, /^0 plaintext fields left$/m);
          assert.match(
            adopted.stdout,
            backend.name === "sqlite"
              ? /^scrubbed: no replaced value is left in the store's files$/m
              : /^not scrubbed: PostgreSQL keeps the replaced row versions/m,
          );
          const done = await runCli(
            ["rewrap", "--dry-run", "--exit-code", ...withFields],
            {},
            60_000,
          );
          assert.equal(done.code, 0, done.stdout);

          // Found by address in any letter case, decrypted, without the fallback.
          const found = await runCli(
            [
              "store",
              "find",
              "--resource",
              "people",
              "--where",
              "email= adopted.7@EXAMPLE.com",
              "--workspace",
              "ws-1",
              ...withFields,
            ],
            {},
            60_000,
          );
          assert.equal(found.code, 0, found.stderr);
          assert.deepEqual(JSON.parse(found.stdout), person(7));

          // No plaintext is left where the table's data lives.
          // What the README tells PostgreSQL operators to run after adopting.
          if (backend.name === "postgres") await backend.exec(url, "VACUUM FULL kmse_records");
          await flush(backend, url);
          const files = await tableFiles(backend, url);
          for (const index of [0, 3, 7, PEOPLE - 1])
            assert.ok(!files.includes(person(index).email), `${person(index).email} is gone`);
        } finally {
          await repository.close();
        }
      });
    });
  }
});
