import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { parseLookupToken } from "../../src/crypto/lookup-token.js";
import type { FieldLayer } from "../../src/fields/field-layer.js";
import { openFieldLayer } from "../../src/fields/open-field-layer.js";
import { EncryptedStore } from "../../src/store/encrypted-store.js";
import { openRepository } from "../../src/store/open-repository.js";
import type { RecordRepository } from "../../src/store/repository.js";
import {
  DaemonProcess,
  newMasterKey,
  suiteDaemon,
  temporaryDirectory,
} from "../support/daemon-process.js";
import { hasCode } from "../support/error-assertions.js";
import {
  type PostgresBackend,
  type SqliteBackend,
  type StoreBackend,
  storeBackends,
} from "../support/store-backends.js";

const FIELD_MAP = `apiVersion: kms-envelope/v1
kind: FieldMap
resources:
  - resource: people
    route: field-service
    fields:
      email: { type: string, lookup: [trim, lowercase] }
      name: string
`;

const TABLES = ["kmse_records", "kmse_field_stamps", "kmse_lookup_tokens"];

/** Every text a store's kms-envelope tables hold, and for SQLite its files' bytes. */
async function storedText(backend: SqliteBackend | PostgresBackend, url: string): Promise<string> {
  const tables = await Promise.all(
    TABLES.map(async (table) => JSON.stringify(await backend.query(url, `SELECT * FROM ${table}`))),
  );
  return [...tables, ...(backend.name === "sqlite" ? [await backend.fileText(url)] : [])].join(
    "\n",
  );
}

/** The token rows of a record. */
function tokens(backend: StoreBackend, url: string, id: string) {
  const parameter = backend.name === "sqlite" ? "?" : "$1";
  return backend.query<{ path: string; token: string }>(
    url,
    `SELECT path, token FROM kmse_lookup_tokens WHERE record_id = ${parameter}`,
    [id],
  );
}

describe("finding records by an encrypted field, through the daemon", () => {
  const masterKey = newMasterKey();
  const suite = suiteDaemon({ env: { ENCRYPTION_MASTER_KEY: masterKey } });
  let directory: Awaited<ReturnType<typeof temporaryDirectory>>;
  let fieldMapPath: string;

  before(async () => {
    directory = await temporaryDirectory();
    fieldMapPath = join(directory.path, "field-map.yaml");
    await writeFile(fieldMapPath, FIELD_MAP);
  });
  after(() => directory?.remove());

  test("seal returns the primary-version token of each lookup field; tokensFor every version's", async () => {
    const layer = await openFieldLayer({ fieldMapPath, daemonSocket: suite.daemon.socketPath });
    try {
      const sealed = await layer.seal("people", [
        { id: "a", workspace: "ws-1", document: { email: " Ada@Example.com", name: "Ada" } },
        { id: "b", workspace: "ws-2", document: { email: "ada@example.com", name: "Ada" } },
        { id: "c", workspace: "ws-1", document: { email: null, name: "Nobody" } },
      ]);
      const [a, b, c] = sealed.map((record) => record.tokens ?? []);
      assert.equal(a?.length, 1);
      assert.equal(a?.[0]?.path, "email");
      assert.equal(parseLookupToken(a?.[0]?.token as string).keyId, suite.daemon.keyId);
      assert.notEqual(a?.[0]?.token, b?.[0]?.token, "another workspace, another token");
      assert.deepEqual(c, [], "an absent value has no token");
      assert.deepEqual(await layer.tokensFor("people", "email", "ws-1", "ADA@example.com  "), [
        a?.[0]?.token,
      ]);
      await assert.rejects(
        layer.tokensFor("people", "name", "ws-1", "Ada"),
        hasCode("INVALID_REQUEST", /people name has no lookup, so it cannot be searched/),
      );
    } finally {
      await layer.close();
    }
  });

  for (const backend of storeBackends()) {
    describe(`EncryptedStore.find (${backend.name})`, () => {
      let url: string;
      let repository: RecordRepository;
      let layer: FieldLayer;
      let store: EncryptedStore;
      before(async () => {
        url = await backend.newStore();
        repository = await openRepository(url);
        layer = await openFieldLayer({ fieldMapPath, daemonSocket: suite.daemon.socketPath });
        store = new EncryptedStore({ repository, codec: layer });
        await store.createMany("people", [
          { id: "ada", workspace: "ws-1", document: { email: "Ada@Example.com", name: "Ada" } },
          { id: "bob", workspace: "ws-1", document: { email: "bob@example.com", name: "Bob" } },
          {
            id: "ada-elsewhere",
            workspace: "ws-2",
            document: { email: "ada@example.com", name: "Ada" },
          },
        ]);
      });
      after(async () => {
        await layer?.close();
        await repository?.close();
        await backend.tearDown();
      });

      const ids = async (value: string, workspace = "ws-1") =>
        (await store.find("people", { field: "email", value, workspace })).map((r) => r.id);

      test("finds a record by its address in another letter case or padded, decrypted", async () => {
        const found = await store.find("people", {
          field: "email",
          value: "  ADA@example.COM\t",
          workspace: "ws-1",
        });
        assert.deepEqual(
          found.map((record) => [record.id, record.document]),
          [["ada", { email: "Ada@Example.com", name: "Ada" }]],
        );
        assert.equal(found[0]?.version, 1);
        assert.deepEqual(await ids("nobody@example.com"), []);
      });

      test("a value many records share is returned in pages: limit, then after the last id", async () => {
        await store.createMany(
          "people",
          ["s-1", "s-2", "s-3", "s-4", "s-5"].map((id) => ({
            id,
            workspace: "ws-1",
            document: { email: "Shared@Example.com", name: id },
          })),
        );
        const page = async (after?: string) =>
          (
            await store.find("people", {
              field: "email",
              value: "shared@example.com",
              workspace: "ws-1",
              limit: 2,
              ...(after === undefined ? {} : { after }),
            })
          ).map((record) => record.id);
        assert.deepEqual(await page(), ["s-1", "s-2"]);
        assert.deepEqual(await page("s-2"), ["s-3", "s-4"]);
        assert.deepEqual(await page("s-4"), ["s-5"], "a short page is the last");
        assert.deepEqual(await ids("shared@example.com"), ["s-1", "s-2", "s-3", "s-4", "s-5"]);
        for (const limit of [0, -1, 1.5, Number.NaN])
          await assert.rejects(
            store.find("people", { field: "email", value: "x", workspace: "ws-1", limit }),
            hasCode("INVALID_REQUEST", /limit must be a positive whole number/),
          );
        for (const id of ["s-1", "s-2", "s-3", "s-4", "s-5"])
          assert.ok(await store.delete("people", id));
      });

      test("another workspace's records never match", async () => {
        assert.deepEqual(await ids("ada@example.com", "ws-2"), ["ada-elsewhere"]);
        assert.deepEqual(await ids("bob@example.com", "ws-2"), []);
        assert.deepEqual(await ids("bob@example.com", "ws-3"), []);
      });

      test("the database holds tokens and ciphertext, never the addresses", async () => {
        const dump = await storedText(backend, url);
        assert.match(dump, /kmsl:v1:/);
        // Only texts with characters base64 never holds, so ciphertext cannot match by chance.
        for (const secret of ["Ada@Example.com", "ada@example.com", "example.com"])
          assert.equal(dump.includes(secret), false, `${secret} is stored in the clear`);
      });

      test("updating the address moves the token: the old one finds nothing", async () => {
        const [bob] = await store.find("people", {
          field: "email",
          value: "bob@example.com",
          workspace: "ws-1",
        });
        assert.ok(bob);
        const before = await tokens(backend, url, "bob");
        await store.update("people", "bob", bob.version, {
          email: "Robert@Example.org",
          name: "Bob",
        });
        assert.deepEqual(await ids("bob@example.com"), []);
        assert.deepEqual(await ids("robert@example.org"), ["bob"]);
        const moved = await tokens(backend, url, "bob");
        assert.equal(moved.length, 1);
        assert.notEqual(moved[0]?.token, before[0]?.token);
        await store.update("people", "bob", bob.version + 1, { email: null, name: "Bob" });
        assert.deepEqual(await ids("robert@example.org"), [], "a removed value has no token");
        assert.deepEqual(await tokens(backend, url, "bob"), []);
      });

      test("deleting a record deletes its token", async () => {
        await store.create("people", {
          id: "gone",
          workspace: "ws-1",
          document: { email: "gone@example.com", name: "Gone" },
        });
        assert.deepEqual(await ids("gone@example.com"), ["gone"]);
        assert.equal(await store.delete("people", "gone"), true);
        assert.deepEqual(await ids("gone@example.com"), []);
        assert.deepEqual(await tokens(backend, url, "gone"), []);
      });

      test("a field without a lookup, or not encrypted at all, is refused saying so", async () => {
        for (const field of ["name", "phone"])
          await assert.rejects(
            store.find("people", { field, value: "Ada", workspace: "ws-1" }),
            hasCode("INVALID_REQUEST", new RegExp(`people ${field} has no lookup`)),
          );
        await assert.rejects(
          store.find("persons", { field: "email", value: "x", workspace: "ws-1" }),
          hasCode("UNMAPPED_RESOURCE", /persons/),
        );
      });

      test("after a rotation, records indexed under the old key version are still found", async () => {
        const rotated = await DaemonProcess.start({
          socketPath: join(directory.path, `rotated-${backend.name}.sock`),
          env: { ENCRYPTION_MASTER_KEY: newMasterKey(), ENCRYPTION_MASTER_KEY_PREVIOUS: masterKey },
          args: [],
        });
        const rotatedLayer = await openFieldLayer({
          fieldMapPath,
          daemonSocket: rotated.socketPath,
        });
        try {
          const rotatedStore = new EncryptedStore({ repository, codec: rotatedLayer });
          const find = async (value: string) =>
            (await rotatedStore.find("people", { field: "email", value, workspace: "ws-1" })).map(
              (record) => [record.id, record.stale],
            );
          assert.deepEqual(await find("ada@example.com"), [["ada", true]]);
          await rotatedStore.create("people", {
            id: "new",
            workspace: "ws-1",
            document: { email: "ADA@example.com", name: "Ada too" },
          });
          assert.equal(
            parseLookupToken((await tokens(backend, url, "new"))[0]?.token as string).keyId,
            rotated.keyId,
          );
          assert.deepEqual(await find("ada@example.com"), [
            ["ada", true],
            ["new", false],
          ]);
          await rotatedStore.delete("people", "new");
        } finally {
          await rotatedLayer.close();
          await rotated.stop();
        }
      });
    });
  }
});
