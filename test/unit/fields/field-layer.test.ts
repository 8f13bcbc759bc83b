import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { parseEncryptionConfiguration } from "../../../src/engine/config/encryption-configuration.js";
import { EncryptionEngine } from "../../../src/engine/encryption-engine.js";
import { type FieldLayer, MapFieldLayer } from "../../../src/fields/field-layer.js";
import { parseFieldMap } from "../../../src/fields/field-map.js";
import { UnmappedResourceError } from "../../../src/fields/unmapped-resource.js";
import { EncryptedStore } from "../../../src/store/encrypted-store.js";
import { PlaintextGuard } from "../../../src/store/plaintext-guard.js";
import { rewrap } from "../../../src/store/rewrap.js";
import { openSqliteRepository } from "../../../src/store/sqlite-repository.js";

const KEY = Buffer.alloc(32, 7).toString("base64");
const COOKIE = "sessioncookies.obot.obot.ai";
const TYPO = "sessioncookie.obot.obot.ai";
const SECRET = "cookie-value-that-must-not-be-stored-plain";

const MAP = parseFieldMap(`apiVersion: kms-envelope/v1
kind: FieldMap
resources:
  - { resource: ${COOKIE}, route: engine, fields: { cookie: string } }
  - { resource: messages, route: engine, fields: { content: string } }
  - { resource: notes }
`);

function engine() {
  return EncryptionEngine.start(
    parseEncryptionConfiguration(`apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [${COOKIE}, messages, notes, ${TYPO}, message]
    providers: [{ aesgcm: { keys: [{ name: k1, secret: "${KEY}" }] } }]
`),
  );
}

/** The refusal: its code, the unknown name, the suggestion, the known names and both ways out. */
function unmapped(resource: string, suggestion: string) {
  return (error: unknown) => {
    assert.ok(error instanceof UnmappedResourceError, String(error));
    assert.equal(error.code, "UNMAPPED_RESOURCE");
    assert.equal(
      error.message,
      `resource "${resource}" is not in the field map, so none of its fields would be encrypted` +
        ` (did you mean "${suggestion}"?); known resources: "messages", "notes", "${COOKIE}"` +
        `; to store it in the clear on purpose, list it in the field map with no fields` +
        ` (- resource: "${resource}") or pass --allow-unmapped (allowUnmapped: true in the library)`,
    );
    assert.ok(!error.message.includes(SECRET));
    return true;
  };
}

describe("field layer: a resource the field map does not list fails closed", () => {
  let layer: FieldLayer;
  let permissive: FieldLayer;

  before(async () => {
    layer = new MapFieldLayer({ fieldMap: MAP, engine: await engine() });
    permissive = new MapFieldLayer({ fieldMap: MAP, engine: await engine(), allowUnmapped: true });
  });
  after(async () => {
    await layer?.close();
    await permissive?.close();
  });

  it("seal and open refuse a mistyped resource, naming it, the near miss and the known ones", async () => {
    const records = [{ id: "s1", document: { cookie: SECRET } }];
    await assert.rejects(layer.seal(TYPO, records), unmapped(TYPO, COOKIE));
    await assert.rejects(layer.open(TYPO, records), unmapped(TYPO, COOKIE));
    await assert.rejects(
      layer.seal("message", [{ id: "m1", document: { content: SECRET } }]),
      unmapped("message", "messages"),
    );
    assert.throws(() => layer.checkResource("message"), unmapped("message", "messages"));
    assert.doesNotThrow(() => layer.checkResource(COOKIE));
  });

  it("the single-value entry points refuse it too", async () => {
    await assert.rejects(
      layer.sealValue(TYPO, "cookie", { id: "s1" }, SECRET),
      unmapped(TYPO, COOKIE),
    );
    await assert.rejects(
      layer.openValue(TYPO, "cookie", { id: "s1" }, "AAAA"),
      unmapped(TYPO, COOKIE),
    );
    await assert.rejects(layer.currentWriter(TYPO, "cookie"), unmapped(TYPO, COOKIE));
  });

  it("allowUnmapped passes unlisted resources through unchanged, and only whole records", async () => {
    const document = { cookie: SECRET, user: "u1" };
    const [sealed] = await permissive.seal(TYPO, [{ id: "s1", document }]);
    assert.deepEqual(sealed, { id: "s1", document, stamps: [] });
    const [opened] = await permissive.open(TYPO, [{ id: "s1", document }]);
    assert.deepEqual(opened, { id: "s1", document, stale: false, stamps: [] });
    await assert.rejects(permissive.sealValue(TYPO, "cookie", { id: "s1" }, SECRET), {
      code: "INVALID_REQUEST",
      message: `the field map lists no encrypted field cookie for ${TYPO}`,
    });
    const [listed] = await permissive.seal(COOKIE, [{ id: "s1", document }]);
    assert.notEqual(listed?.document.cookie, SECRET, "listed resources are still encrypted");
  });

  it("an entry with no fields passes through without needing an engine or a daemon", async () => {
    const plainOnly = new MapFieldLayer({
      fieldMap: parseFieldMap(
        "apiVersion: kms-envelope/v1\nkind: FieldMap\nresources: [{ resource: notes, fields: {} }]",
      ),
    });
    const document = { title: "hello", body: "plain on purpose" };
    assert.deepEqual(await plainOnly.seal("notes", [{ id: "n1", document }]), [
      { id: "n1", document, stamps: [] },
    ]);
    assert.deepEqual(await plainOnly.open("notes", [{ id: "n1", document }]), [
      { id: "n1", document, stale: false, stamps: [] },
    ]);
    assert.deepEqual(plainOnly.encryptedPaths("notes"), []);
    await assert.rejects(plainOnly.seal("note", [{ id: "n1", document }]), {
      code: "UNMAPPED_RESOURCE",
    });
  });

  it("the message lists at most twelve known resources, quotes odd names and skips far ones", () => {
    const known = Array.from({ length: 20 }, (_, index) => `r${String(index).padStart(2, "0")}`);
    const far = new UnmappedResourceError("something-else", known).message;
    assert.doesNotMatch(far, /did you mean/);
    assert.match(far, /"r11" and 8 more; /);
    assert.doesNotMatch(far, /"r12"/);
    const odd = new UnmappedResourceError(`a\nb${"x".repeat(300)}`, known).message;
    assert.equal(odd.split("\n").length, 1, "one line whatever the name holds");
    assert.match(odd, /^resource "a\\nbx{97}"… is not in the field map/);
    assert.match(
      new UnmappedResourceError("users", ["users.obot.obot.ai"]).message,
      /did you mean "users.obot.obot.ai"\?/,
    );
    assert.match(new UnmappedResourceError("x", []).message, /known resources: none;/);
  });
});

describe("EncryptedStore and rewrap over the field layer", () => {
  let directory: string;
  let layer: FieldLayer;

  before(async () => {
    directory = await mkdtemp(join(tmpdir(), "kms-envelope-unmapped-"));
    layer = new MapFieldLayer({ fieldMap: MAP, engine: await engine() });
  });
  after(async () => {
    await layer?.close();
    await rm(directory, { recursive: true, force: true });
  });

  it("refuses every call on a mistyped resource and stores nothing; a fieldless entry is stored as given", async () => {
    const path = join(directory, "store.db");
    const repository = openSqliteRepository(path);
    try {
      const store = new EncryptedStore({
        repository,
        codec: layer,
        guard: new PlaintextGuard({ mode: "refuse" }, () => undefined),
      });
      const refused = { code: "UNMAPPED_RESOURCE", message: /resource "message" is not in/ };
      await assert.rejects(
        store.create("message", { id: "m1", document: { content: SECRET } }),
        refused,
      );
      await assert.rejects(
        store.create("message", { id: "m1", document: { content: `AKIA${"IOSFODNN7EXAMPLE"}` } }),
        refused,
        "refused as unmapped before the guard looks at it",
      );
      await assert.rejects(store.read("message", "m1"), refused);
      await assert.rejects(store.update("message", "m1", 1, { content: SECRET }), refused);
      await assert.rejects(store.delete("message", "m1"), refused);
      assert.deepEqual(await repository.resources(), []);

      await store.create("messages", { id: "m1", document: { content: SECRET } });
      await store.create("notes", { id: "n1", document: { body: "plain on purpose" } });
      assert.equal(
        (await repository.get({ resource: "notes", id: "n1" }))?.document.body,
        "plain on purpose",
      );
      assert.equal((await store.read("messages", "m1"))?.document.content, SECRET);
      assert.ok(!(await readFile(path)).includes(SECRET), "the one sensitive value is ciphertext");

      await assert.rejects(
        rewrap({
          repository,
          codec: layer,
          batchSize: 10,
          dryRun: true,
          resources: ["message"],
          progress: { begin() {}, advance() {}, end() {} },
        }),
        refused,
        "a mistyped --resource is refused rather than reported as nothing to do",
      );
    } finally {
      await repository.close();
    }
  });
});

describe("field layer: a sensitive field is never written by identity", () => {
  const configs = {
    "no rule matches the resource": `
  - resources: [messages]
    providers: [{ aesgcm: { keys: [{ name: k1, secret: "${KEY}" }] } }]`,
    "identity comes first": `
  - resources: ["*.*"]
    providers: [{ identity: {} }, { aesgcm: { keys: [{ name: k1, secret: "${KEY}" }] } }]`,
  };
  for (const [why, rules] of Object.entries(configs)) {
    it(`seal and sealValue refuse when ${why}, and nothing is written`, async () => {
      const layer = new MapFieldLayer({
        fieldMap: MAP,
        engine: await EncryptionEngine.start(
          parseEncryptionConfiguration(
            `apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:${rules}\n`,
          ),
        ),
      });
      try {
        const refusal = (error: unknown) => {
          assert.ok(error instanceof Error && "code" in error, String(error));
          assert.equal(error.code, "INVALID_CONFIG");
          assert.match(
            error.message,
            new RegExp(
              `^EncryptionConfiguration rule for "${COOKIE.replaceAll(".", "\\.")}": writes it with identity .* its encrypted fields would be stored in the clear \\(add a rule for it whose first provider encrypts`,
            ),
          );
          assert.ok(!error.message.includes(SECRET));
          return true;
        };
        await assert.rejects(
          layer.seal(COOKIE, [{ id: "s1", document: { cookie: SECRET } }]),
          refusal,
        );
        await assert.rejects(layer.sealValue(COOKIE, "cookie", { id: "s1" }, SECRET), refusal);
        const none = await layer.seal(COOKIE, [{ id: "s2", document: { other: "x" } }]);
        assert.deepEqual(none[0]?.document, { other: "x" }, "a record without the field is fine");
      } finally {
        await layer.close();
      }
    });
  }
});
