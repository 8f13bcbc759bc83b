import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, beforeEach, describe, test } from "node:test";
import Database from "better-sqlite3";
import { KmsEnvelopeError } from "../../../src/errors.js";
import type { FieldCodec } from "../../../src/fields/field-codec.js";
import { EncryptedStore } from "../../../src/store/encrypted-store.js";
import type { RecordRepository } from "../../../src/store/repository.js";
import { type RewrapProgress, rewrap } from "../../../src/store/rewrap.js";
import { openSqliteRepository } from "../../../src/store/sqlite-repository.js";
import { hasCode } from "../../support/error-assertions.js";
import { SecretboxCodec } from "./support/secretbox-codec.js";

const FIELDS = { credentials: ["secrets"], users: ["email", "name"] };

/** The codec with some calls replaced (to stage a race or an outage around the real one). */
function withOverrides(codec: FieldCodec, overrides: Partial<FieldCodec>): FieldCodec {
  return {
    seal: (resource, records) => codec.seal(resource, records),
    open: (resource, records) => codec.open(resource, records),
    currentWriter: (resource, path) => codec.currentWriter(resource, path),
    encryptedPaths: (resource) => codec.encryptedPaths(resource),
    lookupPaths: (resource) => codec.lookupPaths(resource),
    checkResource: (resource) => codec.checkResource(resource),
    tokensFor: (resource, path, workspace, value) =>
      codec.tokensFor(resource, path, workspace, value),
    close: () => codec.close(),
    ...overrides,
  };
}

/** Records what rewrap reported. */
function recordingProgress(): RewrapProgress & { events: string[] } {
  const events: string[] = [];
  return {
    events,
    begin: (resource, total) => events.push(`begin ${resource} ${total}`),
    advance: (records) => events.push(`advance ${records}`),
    end: () => events.push("end"),
  };
}

describe("rewrap (SQLite, secretbox test codec)", () => {
  let directory: string;
  let path: string;
  let repository: RecordRepository;
  let codec: SecretboxCodec;
  let store: EncryptedStore;

  before(async () => {
    directory = await mkdtemp(join(tmpdir(), "kms-envelope-rewrap-"));
  });
  after(async () => {
    await rm(directory, { recursive: true, force: true });
  });
  beforeEach(async () => {
    await repository?.close();
    path = join(directory, `${Math.random().toString(36).slice(2)}.db`);
    repository = openSqliteRepository(path);
    codec = await SecretboxCodec.create(FIELDS);
    store = new EncryptedStore({ repository, codec });
  });

  async function populate(count: number): Promise<void> {
    for (let index = 0; index < count; index++) {
      const id = `c-${String(index).padStart(4, "0")}`;
      await store.create("credentials", {
        id,
        subjectId: `s-${index % 3}`,
        document: { name: id, secrets: { token: `secret-${index}` } },
      });
    }
    await store.create("users", {
      id: "u-1",
      document: { email: "a@example.com", name: "Ada", plan: "pro" },
    });
  }

  test("dry run counts stale fields and records per writer and writes nothing", async () => {
    await populate(10);
    const oldKey = codec.primaryKeyId;
    const newKey = codec.rotate();
    const progress = recordingProgress();
    const summary = await rewrap({ repository, codec, batchSize: 4, dryRun: true, progress });
    assert.equal(summary.dryRun, true);
    assert.deepEqual(
      summary.resources.map((entry) => [entry.resource, entry.recordsNeeding, entry.remaining]),
      [
        ["credentials", 10, 10],
        ["users", 1, 1],
      ],
    );
    assert.deepEqual(summary.resources[1]?.staleFields, [
      { path: "email", provider: "test-secretbox", keyId: oldKey, fields: 1 },
      { path: "name", provider: "test-secretbox", keyId: oldKey, fields: 1 },
    ]);
    assert.deepEqual(summary.resources[0]?.current, [
      { path: "secrets", provider: "test-secretbox", keyId: newKey },
    ]);
    assert.deepEqual(progress.events, [], "a dry run shows no progress");
    assert.equal(codec.calls.seal, 11, "only the population sealed anything");
    assert.equal(
      (await repository.get({ resource: "credentials", id: "c-0000" }))?.version,
      1,
      "nothing was written",
    );
  });

  test("rewrap moves every field to the current key in batches; a second run finds nothing", async () => {
    await populate(10);
    const oldKey = codec.primaryKeyId;
    codec.rotate();
    const progress = recordingProgress();
    const summary = await rewrap({ repository, codec, batchSize: 4, dryRun: false, progress });
    const credentials = summary.resources[0];
    assert.equal(credentials?.recordsRewrapped, 10);
    assert.equal(credentials?.fieldsRewrapped, 10);
    assert.equal(credentials?.remaining, 0);
    assert.equal(summary.resources[1]?.fieldsRewrapped, 2);
    assert.deepEqual(progress.events, [
      "begin credentials 10",
      "advance 4",
      "advance 4",
      "advance 2",
      "end",
      "begin users 1",
      "advance 1",
      "end",
    ]);
    // Every field now opens under the new key only.
    codec.retire(oldKey);
    for (let index = 0; index < 10; index++) {
      const read = await store.read("credentials", `c-${String(index).padStart(4, "0")}`);
      assert.deepEqual(read?.document.secrets, { token: `secret-${index}` });
      assert.equal(read?.stale, false);
      assert.equal(read?.version, 2, "rewrap wrote each record once");
    }
    assert.deepEqual((await store.read("users", "u-1"))?.document, {
      email: "a@example.com",
      name: "Ada",
      plan: "pro",
    });
    const again = await rewrap({
      repository,
      codec,
      batchSize: 4,
      dryRun: false,
      progress: recordingProgress(),
    });
    assert.deepEqual(
      again.resources.map((entry) => entry.recordsRewrapped + entry.recordsNeeding),
      [0, 0],
      "idempotent",
    );
  });

  test("a record the application changes between read and write is re-read, never overwritten", async () => {
    await populate(6);
    codec.rotate();
    // The application updates c-0002 (with the new key, as it would after the rotation) while
    // rewrap holds an older copy: rewrap's write must lose, then re-read and find it done.
    let raced = false;
    const racing = withOverrides(codec, {
      seal: async (resource, records) => {
        if (!raced && records.some((record) => record.id === "c-0002")) {
          raced = true;
          const current = await store.read("credentials", "c-0002");
          await store.update("credentials", "c-0002", current?.version ?? 0, {
            name: "c-0002",
            secrets: { token: "changed-by-app" },
          });
        }
        return codec.seal(resource, records);
      },
    });
    const summary = await rewrap({
      repository,
      codec: racing,
      batchSize: 10,
      dryRun: false,
      progress: recordingProgress(),
    });
    assert.equal(raced, true, "the race happened");
    const credentials = summary.resources[0];
    assert.equal(credentials?.conflictsRetried, 1);
    assert.equal(credentials?.recordsRewrapped, 5, "the raced record needed no rewrap after all");
    assert.equal(credentials?.remaining, 0);
    const racedRecord = await store.read("credentials", "c-0002");
    assert.deepEqual(
      racedRecord?.document.secrets,
      { token: "changed-by-app" },
      "the app's write stands",
    );
    assert.equal(racedRecord?.version, 2);
  });

  test("a record that cannot be opened is set aside and named; the others are rewrapped", async () => {
    await populate(5);
    codec.rotate();
    // Corrupt one stored value (one byte of the box) directly in the database.
    const database = new Database(path);
    const row = database
      .prepare("SELECT document FROM kmse_records WHERE resource = 'credentials' AND id = 'c-0003'")
      .get() as { document: string };
    const document = JSON.parse(row.document) as { secrets: string };
    const flipped = `${document.secrets.slice(0, -3)}${document.secrets.at(-3) === "A" ? "B" : "A"}${document.secrets.slice(-2)}`;
    database
      .prepare(
        "UPDATE kmse_records SET document = ? WHERE resource = 'credentials' AND id = 'c-0003'",
      )
      .run(JSON.stringify({ ...document, secrets: flipped }));
    database.close();
    const summary = await rewrap({
      repository,
      codec,
      batchSize: 10,
      dryRun: false,
      progress: recordingProgress(),
    });
    const credentials = summary.resources[0];
    assert.deepEqual(credentials?.failed, [{ id: "c-0003", code: "DECRYPTION_FAILED" }]);
    assert.equal(credentials?.recordsRewrapped, 4);
    assert.equal(credentials?.remaining, 1, "the bad record is still under the old key");
  });

  test("a failure that is not about one record (the codec is down) stops the run", async () => {
    await populate(3);
    codec.rotate();
    // The daemon dies after rewrap has asked for the current writer: open and Status fail.
    let writerCalls = 0;
    const down = withOverrides(codec, {
      open: async () => {
        throw new Error("daemon unreachable");
      },
      currentWriter: async () => {
        if (++writerCalls > 1) throw new Error("daemon unreachable");
        return codec.currentWriter();
      },
    });
    await assert.rejects(
      rewrap({
        repository,
        codec: down,
        batchSize: 2,
        dryRun: false,
        progress: recordingProgress(),
      }),
      /daemon unreachable/,
    );
    assert.equal(
      await repository.countRecordsNotUnder("credentials", {
        writers: [{ path: "secrets", ...(await codec.currentWriter()) }],
      }),
      3,
      "nothing was half-written",
    );
  });

  test("a value the daemon refuses while it still answers is that record's failure, not an outage", async () => {
    await populate(4);
    codec.rotate();
    // As through the field service: a bad value comes back as a failed call (no record code).
    const refusing = withOverrides(codec, {
      open: async (resource, records) => {
        if (records.some((record) => record.id === "c-0001")) {
          throw new KmsEnvelopeError("KMS_PLUGIN_FAILED", "Open failed with INVALID_ARGUMENT");
        }
        return codec.open(resource, records);
      },
    });
    const summary = await rewrap({
      repository,
      codec: refusing,
      batchSize: 10,
      dryRun: false,
      resources: ["credentials"],
      progress: recordingProgress(),
    });
    assert.deepEqual(summary.resources[0]?.failed, [{ id: "c-0001", code: "KMS_PLUGIN_FAILED" }]);
    assert.equal(summary.resources[0]?.recordsRewrapped, 3);
  });

  test("an abort signal stops after the batch in flight and the summary says so", async () => {
    await populate(9);
    codec.rotate();
    const controller = new AbortController();
    const progress = recordingProgress();
    const stopping: RewrapProgress = {
      ...progress,
      advance: (records) => {
        progress.advance(records);
        controller.abort();
      },
    };
    const summary = await rewrap({
      repository,
      codec,
      batchSize: 4,
      dryRun: false,
      progress: stopping,
      signal: controller.signal,
    });
    assert.equal(summary.interrupted, true);
    assert.equal(summary.resources.length, 1, "later resources were not started");
    assert.equal(summary.resources[0]?.recordsRewrapped, 4);
    assert.equal(summary.resources[0]?.remaining, 5);
  });

  test("--all also rewraps records whose stamps look current but the codec reports stale", async () => {
    await populate(3);
    codec.rotate();
    // Stamps that lie (e.g. edited by hand): they claim the new key for c-0001.
    const database = new Database(path);
    database
      .prepare(
        "UPDATE kmse_field_stamps SET key_id = ? WHERE resource = 'credentials' AND record_id = 'c-0001'",
      )
      .run(codec.primaryKeyId);
    database.close();
    const byStamps = await rewrap({
      repository,
      codec,
      batchSize: 10,
      dryRun: false,
      resources: ["credentials"],
      progress: recordingProgress(),
    });
    assert.equal(byStamps.resources[0]?.recordsRewrapped, 2, "stamps alone miss c-0001");
    const progress = recordingProgress();
    const all = await rewrap({
      repository,
      codec,
      batchSize: 10,
      dryRun: false,
      resources: ["credentials"],
      openAll: true,
      progress,
    });
    assert.equal(all.resources[0]?.recordsRewrapped, 1, "only the stale one is rewritten");
    assert.equal(progress.events[0], "begin credentials 3", "--all counts every record");
    assert.equal((await store.read("credentials", "c-0001"))?.stale, false);
  });

  test("fields of resources the field map no longer lists are reported and left alone", async () => {
    await populate(2);
    const narrower = withOverrides(codec, {
      encryptedPaths: (resource) => (resource === "users" ? ["email"] : []),
    });
    const summary = await rewrap({
      repository,
      codec: narrower,
      batchSize: 10,
      dryRun: true,
      progress: recordingProgress(),
    });
    assert.deepEqual(
      summary.unmapped.map((entry) => `${entry.resource}.${entry.path}:${entry.fields}`),
      ["credentials.secrets:2", "users.name:1"],
    );
  });

  describe("adopting plaintext", () => {
    /** Rows as a store holds them before the field map listed their fields: no stamps. */
    async function populatePlain(count: number): Promise<void> {
      await repository.insert(
        "users",
        Array.from({ length: count }, (_, index) => ({
          id: `p-${index}`,
          subjectId: null,
          workspace: null,
          document: { email: `plain-${index}@example.com`, name: `Plain ${index}`, plan: "free" },
          stamps: [],
        })),
      );
      // One record half adopted: email sealed, name (listed later) still in the clear.
      const [sealed] = await codec.seal("users", [{ id: "half", document: { email: "h@x.io" } }]);
      assert.ok(sealed);
      await repository.insert("users", [
        {
          id: "half",
          subjectId: null,
          workspace: null,
          document: { ...sealed.document, name: "Half Plain" },
          stamps: sealed.stamps,
        },
      ]);
    }

    test("a value stored in the clear is refused naming the field, or read as it is when adopting", async () => {
      await populatePlain(1);
      await assert.rejects(
        store.read("users", "p-0"),
        hasCode(
          "MALFORMED_CIPHERTEXT",
          /^malformed ciphertext: users "p-0" email holds a plain value, .*--adopt-plaintext/,
        ),
      );
      await assert.rejects(store.read("users", "p-0"), (error: Error) => {
        assert.doesNotMatch(error.message, /plain-0@example\.com/, "the value is never quoted");
        return true;
      });
      const adopting = new EncryptedStore({ repository, codec, adoptPlaintext: true });
      const plain = await adopting.read("users", "p-0");
      assert.deepEqual(plain?.document, {
        email: "plain-0@example.com",
        name: "Plain 0",
        plan: "free",
      });
      assert.deepEqual(plain?.plaintextFields, ["email", "name"]);
      assert.equal(plain?.stale, true);
      const half = await adopting.read("users", "half");
      assert.deepEqual(half?.document, { email: "h@x.io", name: "Half Plain" });
      assert.deepEqual(half?.plaintextFields, ["name"], "the sealed field was opened");
    });

    test("rewrap counts plaintext fields in every run and encrypts them only when adopting, then scrubs", async () => {
      await populatePlain(5);
      const dry = await rewrap({ repository, codec, dryRun: true });
      const users = dry.resources.find((entry) => entry.resource === "users");
      assert.deepEqual(users?.plaintextFields, [
        { path: "email", fields: 5 },
        { path: "name", fields: 6 },
      ]);
      assert.equal(users?.plaintextLeft, 11);
      assert.equal(users?.recordsNeeding, 0, "without adopting, nothing to rewrap");
      const dryAdopting = await rewrap({ repository, codec, dryRun: true, adoptPlaintext: true });
      assert.equal(
        dryAdopting.resources[0]?.recordsNeeding,
        6,
        "adopting visits every such record",
      );
      assert.equal(dryAdopting.scrub, undefined, "a dry run scrubs nothing");

      const notAdopting = await rewrap({ repository, codec });
      assert.equal(notAdopting.resources[0]?.recordsRewrapped, 0);
      assert.equal(notAdopting.resources[0]?.plaintextLeft, 11);
      assert.equal(notAdopting.scrub, undefined);

      const adopted = await rewrap({ repository, codec, batchSize: 4, adoptPlaintext: true });
      assert.equal(adopted.resources[0]?.recordsRewrapped, 6);
      assert.equal(adopted.resources[0]?.plaintextEncrypted, 11);
      assert.equal(adopted.resources[0]?.plaintextLeft, 0);
      assert.equal(adopted.resources[0]?.remaining, 0);
      assert.deepEqual(adopted.scrub, { complete: true });
      // Now plain reads work, with the same values, and the rows hold ciphertext.
      const record = await store.read("users", "p-3");
      assert.deepEqual(record?.document, {
        email: "plain-3@example.com",
        name: "Plain 3",
        plan: "free",
      });
      assert.deepEqual(record?.plaintextFields, []);
      const raw = await repository.get({ resource: "users", id: "p-3" });
      assert.match(String(raw?.document.email), /^tsb:/);
      assert.deepEqual(
        raw?.stamps.map((stamp) => stamp.path),
        ["email", "name"],
      );
      const again = await rewrap({ repository, codec, adoptPlaintext: true });
      assert.equal(again.resources[0]?.recordsRewrapped, 0, "a finished adoption finds nothing");
    });

    test("after adoption the SQLite file holds no old value, not even one freed before secure_delete", async () => {
      await populatePlain(3);
      // A store written by an older kms-envelope or another tool: secure_delete off, a value
      // replaced in place (its old text left in the page's free space) and a large record
      // deleted (its overflow pages left on the free list, text intact), pages rewrap never
      // rewrites.
      const legacy = new Database(path);
      legacy.pragma("secure_delete = OFF");
      legacy
        .prepare("UPDATE kmse_records SET document = ? WHERE resource = 'users' AND id = 'p-1'")
        .run(JSON.stringify({ email: "replaced-1@example.com", name: "Plain 1", plan: "free" }));
      legacy
        .prepare(
          "INSERT INTO kmse_records (resource, id, document, version, updated_at) VALUES ('users', 'gone', ?, 1, '2026-01-01T00:00:00Z')",
        )
        .run(
          JSON.stringify({ email: "deleted@example.com", notes: "deleted note ".repeat(40_000) }),
        );
      legacy.prepare("DELETE FROM kmse_records WHERE id = 'gone'").run();
      legacy.close();
      const fileText = async () =>
        (
          await Promise.all(
            ["", "-wal"].map((suffix) =>
              readFile(`${path}${suffix}`).then(
                (bytes) => bytes.toString("latin1"),
                () => "",
              ),
            ),
          )
        ).join("");
      const secrets = [
        "plain-0@example.com",
        "plain-1@example.com",
        "replaced-1@example.com",
        "Plain 2",
        "deleted@example.com",
        "deleted note",
      ];
      const before = await fileText();
      for (const secret of secrets)
        assert.ok(before.includes(secret), `${secret} is in the file before`);

      const summary = await rewrap({ repository, codec, adoptPlaintext: true });
      assert.deepEqual(summary.scrub, { complete: true });
      const after = await fileText();
      for (const secret of secrets) assert.ok(!after.includes(secret), `${secret} is gone`);
    });
  });
});
