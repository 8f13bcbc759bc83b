import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseEncryptionConfiguration } from "../../../src/engine/config/encryption-configuration.js";
import { EncryptionEngine } from "../../../src/engine/encryption-engine.js";

const text = (value: string) => Buffer.from(value, "utf8");
const KEY = text("/registry/secrets/default/db");
const ONES = Buffer.alloc(32, 1).toString("base64");
const TWOS = Buffer.alloc(32, 2).toString("base64");
const SIXTEEN = Buffer.alloc(16, 3).toString("base64");

function engineFor(providers: string) {
  return EncryptionEngine.start(
    parseEncryptionConfiguration(
      `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers: ${providers}
  - resources: ["*.apps"]
    providers: [{ aesgcm: { keys: [{ name: apps, secret: "${SIXTEEN}" }] } }]
`,
    ),
  );
}

const stringOf = (data: Uint8Array) => Buffer.from(data).toString("latin1");

describe("engine with the local providers (aesgcm, aescbc, secretbox, identity)", () => {
  it("rotates two secretbox keys: key2 first writes key2 and reads key1 values as stale", async () => {
    const before = await engineFor(
      `[{ secretbox: { keys: [{ name: key1, secret: "${ONES}" }] } }]`,
    );
    const after = await engineFor(
      `[{ secretbox: { keys: [{ name: key2, secret: "${TWOS}" }, { name: key1, secret: "${ONES}" }] } }]`,
    );
    const old = await before.encrypt("secrets", text("v1"), KEY);
    assert.ok(stringOf(old.data).startsWith("k8s:enc:secretbox:v1:key1:"), "written under key1");
    const read = await after.decrypt("secrets", old.data, KEY);
    assert.deepEqual(
      [stringOf(read.plaintext), read.stale, read.writer.keyId],
      ["v1", true, "key1"],
    );
    const fresh = await after.encrypt("secrets", text("v2"), KEY);
    assert.ok(stringOf(fresh.data).startsWith("k8s:enc:secretbox:v1:key2:"), "written under key2");
    assert.equal((await after.decrypt("secrets", fresh.data, KEY)).stale, false);
    await assert.rejects(
      before.decrypt("secrets", fresh.data, KEY),
      /no matching prefix found/,
      "key1-only cannot read key2",
    );
  });

  for (const type of ["aesgcm", "aescbc", "secretbox"]) {
    it(`${type}: the prefix and key name select the key; a flipped byte in either is refused`, async () => {
      const engine = await engineFor(`[{ ${type}: { keys: [{ name: k1, secret: "${ONES}" }] } }]`);
      const stored = Buffer.from(
        (await engine.encrypt("secrets", text("pandas are the best"), KEY)).data,
      );
      const prefix = `k8s:enc:${type}:v1:k1:`;
      assert.equal(stored.subarray(0, prefix.length).toString(), prefix);
      for (const offset of [0, 9, prefix.length - 3]) {
        const tampered = Buffer.from(stored);
        tampered[offset] = (tampered[offset] as number) ^ 0x02;
        await assert.rejects(
          engine.decrypt("secrets", tampered, KEY),
          /no matching prefix found|tried to read encrypted data/,
        );
      }
    });
  }

  it("resources without a rule use identity, which refuses encrypted data", async () => {
    const engine = await engineFor(`[{ secretbox: { keys: [{ name: k1, secret: "${ONES}" }] } }]`);
    const plain = await engine.encrypt("configmaps", text("plain"), KEY);
    assert.deepEqual([stringOf(plain.data), plain.writer.provider], ["plain", "identity"]);
    const secret = await engine.encrypt("secrets", text("v"), KEY);
    await assert.rejects(
      engine.decrypt("configmaps", secret.data, KEY),
      /identity transformer tried to read encrypted data/,
    );
  });

  it("matches *.group rules: deployments.apps uses the apps rule", async () => {
    const engine = await engineFor("[{ identity: {} }]");
    const stored = await engine.encrypt(
      "deployments.apps",
      text("d"),
      text("/registry/deployments/ns/d"),
    );
    assert.ok(
      stringOf(stored.data).startsWith("k8s:enc:aesgcm:v1:apps:"),
      "the *.apps rule wrote it",
    );
  });
});

describe("engine close zeroes the keys it copied", () => {
  for (const provider of ["aesgcm", "aescbc", "secretbox"]) {
    it(`a ${provider} transformer kept past close refuses instead of using a wiped key`, async () => {
      const engine = await engineFor(
        `[{ ${provider}: { keys: [{ name: k, secret: "${ONES}" }] } }]`,
      );
      const transformer = engine.transformerFor("secrets");
      const stored = await transformer.toStorage(text("v"), KEY);
      engine.close();
      await assert.rejects(transformer.toStorage(text("v"), KEY), /disposed: its key is wiped/);
      await assert.rejects(transformer.fromStorage(stored.data, KEY), /disposed: its key is wiped/);
    });
  }
});
