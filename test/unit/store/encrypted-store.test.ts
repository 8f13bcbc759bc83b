import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { CredentialStore, credentialId } from "../../../src/store/credential-store.js";
import { EncryptedStore } from "../../../src/store/encrypted-store.js";
import { PlaintextGuard } from "../../../src/store/plaintext-guard.js";
import type { RecordRepository } from "../../../src/store/repository.js";
import { openSqliteRepository } from "../../../src/store/sqlite-repository.js";
import { writeSubjectExport } from "../../../src/store/subject-export.js";
import { hasCode } from "../../support/error-assertions.js";
import { SecretboxCodec } from "./support/secretbox-codec.js";

describe("EncryptedStore, CredentialStore and subject export (SQLite, secretbox test codec)", () => {
  let directory: string;
  let path: string;
  let repository: RecordRepository;
  let codec: SecretboxCodec;
  let store: EncryptedStore;
  let credentials: CredentialStore;

  before(async () => {
    directory = await mkdtemp(join(tmpdir(), "kms-envelope-estore-"));
    path = join(directory, "store.db");
    repository = openSqliteRepository(path);
    codec = await SecretboxCodec.create({ credentials: ["secrets"], messages: ["content"] });
    store = new EncryptedStore({
      repository,
      codec,
      guard: new PlaintextGuard({ mode: "refuse" }, () => undefined),
    });
    credentials = new CredentialStore(store, codec);
  });
  after(async () => {
    await repository?.close();
    await rm(directory, { recursive: true, force: true });
  });

  test("encrypted fields are ciphertext at rest and open to their JSON values", async () => {
    await store.create("messages", {
      id: "m-1",
      subjectId: "alice",
      document: { title: "Weekly sync", content: { text: "the launch moved", n: 3 } },
    });
    const stored = await repository.get({ resource: "messages", id: "m-1" });
    assert.match(String(stored?.document.content), /^tsb:k1-[0-9a-f]+:/);
    assert.equal(stored?.document.title, "Weekly sync", "unlisted fields stay plain");
    const raw = await readFile(path);
    assert.ok(!raw.includes("the launch moved"), "the database file holds no plaintext of it");
    const read = await store.read("messages", "m-1");
    assert.deepEqual(read?.document, {
      title: "Weekly sync",
      content: { text: "the launch moved", n: 3 },
    });
    assert.equal(read?.stale, false);
    assert.equal(await store.read("messages", "missing"), undefined);
  });

  test("update applies at the version read; a stale version is STORE_CONFLICT with what to do", async () => {
    const created = await store.create("messages", {
      id: "m-2",
      document: { content: "v1" },
    });
    const updated = await store.update("messages", "m-2", created.version, { content: "v2" });
    assert.equal(updated.version, 2);
    await assert.rejects(
      store.update("messages", "m-2", created.version, { content: "lost update" }),
      (error: Error & { code?: string }) =>
        error.code === "STORE_CONFLICT" &&
        /^messages "m-2" changed since version 1 was read; read it again and retry$/.test(
          error.message,
        ),
    );
    assert.equal((await store.read("messages", "m-2"))?.document.content, "v2");
    await assert.rejects(
      store.update("messages", "gone", 1, { content: "x" }),
      (error: Error & { code?: string }) =>
        error.code === "STORE_CONFLICT" && /does not exist/.test(error.message),
    );
    assert.equal(await store.delete("messages", "m-2", 2), true);
  });

  test("createMany seals a batch in one codec call and writes all of it or, when one id exists, none", async () => {
    const sealsBefore = codec.calls.seal;
    const created = await store.createMany("messages", [
      { id: "batch-1", subjectId: "carol", workspace: "ws-a", document: { content: "one" } },
      { id: "batch-2", document: { content: "two" } },
    ]);
    assert.equal(codec.calls.seal, sealsBefore + 1, "one seal for the batch");
    assert.deepEqual(
      created.map((record) => [record.id, record.subjectId, record.workspace, record.version]),
      [
        ["batch-1", "carol", "ws-a", 1],
        ["batch-2", null, null, 1],
      ],
    );
    assert.equal((await store.read("messages", "batch-2"))?.document.content, "two");
    await assert.rejects(
      store.createMany("messages", [
        { id: "batch-3", document: { content: "three" } },
        { id: "batch-1", document: { content: "again" } },
      ]),
      hasCode("STORE_CONFLICT", 'record "batch-1" of messages already exists; update it instead'),
    );
    assert.equal(await store.read("messages", "batch-3"), undefined, "nothing of the batch");
    assert.deepEqual(await store.createMany("messages", []), []);
  });

  test("read with a workspace finds only a record of that workspace, as if others did not exist", async () => {
    await store.create("messages", { id: "ws-1", workspace: "ws-a", document: { content: "a" } });
    assert.equal(
      (await store.read("messages", "ws-1", { workspace: "ws-a" }))?.document.content,
      "a",
    );
    const opensBefore = codec.calls.open;
    assert.equal(await store.read("messages", "ws-1", { workspace: "ws-b" }), undefined);
    assert.equal(codec.calls.open, opensBefore, "another workspace's record is never opened");
  });

  test("the guard refuses a credential in a plaintext field before anything is sealed", async () => {
    const sealsBefore = codec.calls.seal;
    await assert.rejects(
      store.create("messages", {
        id: "m-3",
        document: { title: `key AKIA${"IOSFODNN7EXAMPLE"}`, content: "hello" },
      }),
      (error: Error & { code?: string }) => error.code === "PLAINTEXT_CREDENTIAL",
    );
    assert.equal(codec.calls.seal, sealsBefore, "nothing was sealed");
    assert.equal(await repository.get({ resource: "messages", id: "m-3" }), undefined);
    // The same value in the encrypted field is what the field is for.
    await store.create("messages", {
      id: "m-3",
      document: { title: "keys", content: `key AKIA${"IOSFODNN7EXAMPLE"}` },
    });
  });

  test("a credential's whole secret map is one encrypted value with one stamp", async () => {
    const secrets = { apiKey: "k-123", password: "hunter2", "x-header": "v-secret-header" };
    const put = await credentials.put(
      { name: "github", context: "mcp/github", secrets },
      { subjectId: "alice" },
    );
    assert.equal(put.version, 1);
    const stored = await repository.get({
      resource: "credentials",
      id: credentialId("github", "mcp/github"),
    });
    assert.deepEqual(Object.keys(stored?.document ?? {}).sort(), ["context", "name", "secrets"]);
    assert.equal(typeof stored?.document.secrets, "string", "the map is one ciphertext");
    assert.equal(stored?.stamps.length, 1);
    assert.equal(stored?.stamps[0]?.path, "secrets");
    for (const value of Object.values(secrets)) {
      assert.ok(!JSON.stringify(stored).includes(value), "no secret in the stored row");
    }
    assert.deepEqual((await credentials.get("github", "mcp/github"))?.secrets, secrets);
    const replaced = await credentials.put(
      { name: "github", context: "mcp/github", secrets: { apiKey: "k-456" } },
      { expectedVersion: 1 },
    );
    assert.equal(replaced.version, 2);
    assert.deepEqual((await credentials.get("github", "mcp/github"))?.secrets, { apiKey: "k-456" });
    assert.equal(await credentials.get("github", "other"), undefined);
    assert.equal(await credentials.delete("github", "mcp/github"), true);
  });

  test("credential ids cannot collide and need a name and a context", () => {
    assert.notEqual(credentialId("a/b", "c"), credentialId("b", "c/a"));
    assert.notEqual(credentialId("b", "a/c"), credentialId("c", "a/b"));
    assert.throws(
      () => credentialId("", "ctx"),
      (error: Error & { code?: string }) => error.code === "INVALID_REQUEST",
    );
  });

  test("a codec that would leave the secret map in the clear is refused", async () => {
    const plain = await SecretboxCodec.create({ credentials: ["other"] });
    assert.throws(
      () => new CredentialStore(store, plain),
      (error: Error & { code?: string }) =>
        error.code === "INVALID_CONFIG" &&
        /^field map credentials\.secrets: is not encrypted \(add it to the field map, with type json,/.test(
          error.message,
        ),
    );
  });

  test("a subject export carries encrypted fields as the stored ciphertext, in both formats", async () => {
    await credentials.put(
      { name: "slack", context: "bots", secrets: { token: "xoxb-not-exported" } },
      { subjectId: "bob" },
    );
    await store.create("messages", {
      id: "m-bob",
      subjectId: "bob",
      document: { title: "hello", content: "private words" },
    });
    const chunks: string[] = [];
    const count = await writeSubjectExport(repository, "bob", "ndjson", async (chunk) => {
      chunks.push(chunk);
    });
    assert.equal(count, 2);
    const text = chunks.join("");
    for (const secret of ["xoxb-not-exported", "private words"]) {
      assert.ok(!text.includes(secret), "no plaintext of an encrypted field");
    }
    const lines = text
      .trimEnd()
      .split("\n")
      .map((line) => JSON.parse(line));
    assert.deepEqual(
      lines.map((line) => [line.resource, line.subjectId]),
      [
        ["credentials", "bob"],
        ["messages", "bob"],
      ],
    );
    const message = lines[1];
    const stored = await repository.get({ resource: "messages", id: "m-bob" });
    assert.equal(message.document.content, stored?.document.content, "exactly the stored text");
    assert.equal(message.document.title, "hello");
    assert.deepEqual(message.encryptedFields, stored?.stamps);
    const json: string[] = [];
    await writeSubjectExport(repository, "bob", "json", async (chunk) => {
      json.push(chunk);
    });
    const parsed = JSON.parse(json.join(""));
    assert.equal(parsed.subjectId, "bob");
    assert.deepEqual(parsed.records, lines);
    const none: string[] = [];
    assert.equal(
      await writeSubjectExport(repository, "nobody", "json", async (chunk) => {
        none.push(chunk);
      }),
      0,
    );
    assert.deepEqual(JSON.parse(none.join("")).records, []);
  });
});
