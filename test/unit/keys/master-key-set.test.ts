import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, test } from "node:test";
import { deriveKeyId, deriveWorkspaceKey } from "../../../src/crypto/derivation.js";
import { KmsEnvelopeError } from "../../../src/errors.js";
import { MasterKeySet, MasterKeyVersion } from "../../../src/keys/master-key-set.js";

const WORKSPACE_CACHE_LIMIT = 4096;

function isZero(bytes: Uint8Array): boolean {
  return bytes.every((byte) => byte === 0);
}

describe("MasterKeyVersion", () => {
  test("the key id is the SPEC §2 key id of the master key under the provider prefix", () => {
    const masterKey = randomBytes(32);
    const version = new MasterKeyVersion("local", masterKey);
    assert.equal(version.keyId, deriveKeyId("local", masterKey));
    assert.match(version.keyId, /^local:[A-Za-z0-9_-]{16}$/);
  });

  test("a master key that is not 32 bytes is refused with INVALID_MASTER_KEY", () => {
    for (const length of [0, 16, 31, 33, 64]) {
      assert.throws(
        () => new MasterKeyVersion("local", new Uint8Array(length)),
        (error: unknown) =>
          error instanceof KmsEnvelopeError &&
          error.code === "INVALID_MASTER_KEY" &&
          error.message === "a master key must be 32 bytes",
        `length ${length}`,
      );
    }
  });

  test("the version copies the master key, so the caller wiping its copy changes nothing", () => {
    const masterKey = randomBytes(32);
    const expected = deriveWorkspaceKey(masterKey, "tenant-a");
    const version = new MasterKeyVersion("local", masterKey);
    masterKey.fill(0);
    assert.deepEqual(Buffer.from(version.workspaceKey("tenant-a")), expected);
  });

  test("workspaceKey derives W per SPEC §2 and returns the cached buffer on the next call", () => {
    const masterKey = randomBytes(32);
    const version = new MasterKeyVersion("local", masterKey);
    const first = version.workspaceKey("tenant-a");
    assert.deepEqual(Buffer.from(first), deriveWorkspaceKey(masterKey, "tenant-a"));
    assert.equal(version.workspaceKey("tenant-a"), first);
    assert.notDeepEqual(Buffer.from(version.workspaceKey("tenant-b")), Buffer.from(first));
  });

  test("the workspace-key cache is bounded at 4096, evicts the least recently used key and wipes it", () => {
    const masterKey = randomBytes(32);
    const version = new MasterKeyVersion("local", masterKey);
    const first = version.workspaceKey("workspace-0");
    const second = version.workspaceKey("workspace-1");
    for (let index = 2; index < WORKSPACE_CACHE_LIMIT; index += 1) {
      version.workspaceKey(`workspace-${index}`);
    }
    // Exactly at the limit: nothing evicted yet. Using workspace-0 makes workspace-1 the coldest.
    assert.equal(isZero(first), false);
    assert.equal(version.workspaceKey("workspace-0"), first);

    version.workspaceKey(`workspace-${WORKSPACE_CACHE_LIMIT}`);
    assert.equal(isZero(second), true, "the least recently used workspace key is zeroed");
    assert.equal(isZero(first), false, "a recently used key survives although it is the oldest");
    assert.equal(version.workspaceKey("workspace-0"), first);

    const rederived = version.workspaceKey("workspace-1");
    assert.notEqual(rederived, second, "an evicted key is derived into a fresh buffer");
    assert.deepEqual(Buffer.from(rederived), deriveWorkspaceKey(masterKey, "workspace-1"));
  });

  test("dispose zeroes every cached workspace key", () => {
    const version = new MasterKeyVersion("local", randomBytes(32));
    const keys = ["a", "b", "c"].map((workspace) => version.workspaceKey(workspace));
    assert.ok(keys.every((key) => !isZero(key)));
    version.dispose();
    assert.ok(keys.every(isZero));
  });

  test("dispose zeroes the master key: later derivations are those of the all-zero key", () => {
    const version = new MasterKeyVersion("local", randomBytes(32));
    version.dispose();
    assert.deepEqual(
      Buffer.from(version.workspaceKey("a")),
      deriveWorkspaceKey(new Uint8Array(32), "a"),
    );
  });
});

describe("MasterKeySet", () => {
  test("the first key is the primary and keyIds lists versions primary first", () => {
    const keys = [randomBytes(32), randomBytes(32), randomBytes(32)];
    const set = MasterKeySet.of("local", keys);
    const expected = keys.map((key) => deriveKeyId("local", key));
    assert.equal(set.primary.keyId, expected[0]);
    assert.deepEqual(set.keyIds, expected);
    for (const keyId of expected) assert.equal(set.version(keyId).keyId, keyId);
  });

  test("duplicate master keys collapse into one version, keeping the first position", () => {
    const primary = randomBytes(32);
    const older = randomBytes(32);
    const set = MasterKeySet.of("local", [primary, older, Buffer.from(primary), older]);
    assert.deepEqual(set.keyIds, [deriveKeyId("local", primary), deriveKeyId("local", older)]);
  });

  test("the caller keeps ownership of the raw keys: they are not wiped by the set", () => {
    const key = randomBytes(32);
    const copy = Buffer.from(key);
    const set = MasterKeySet.of("local", [key, Buffer.from(key)]);
    set.dispose();
    assert.deepEqual(key, copy);
  });

  test("an empty key list is refused with MISSING_MASTER_KEY", () => {
    assert.throws(
      () => MasterKeySet.of("local", []),
      (error: unknown) => error instanceof KmsEnvelopeError && error.code === "MISSING_MASTER_KEY",
    );
  });

  test("an unknown key id is UNKNOWN_KEY_ID naming the id and how to fix it, never a guess", () => {
    const set = MasterKeySet.of("local", [randomBytes(32)]);
    const unknown = deriveKeyId("local", randomBytes(32));
    assert.throws(
      () => set.version(unknown),
      (error: unknown) =>
        error instanceof KmsEnvelopeError &&
        error.code === "UNKNOWN_KEY_ID" &&
        error.message.includes(JSON.stringify(unknown)) &&
        error.message.includes("ENCRYPTION_MASTER_KEY_PREVIOUS"),
    );
  });

  test("key ids are provider-scoped: the same key under another provider is unknown", () => {
    const key = randomBytes(32);
    const set = MasterKeySet.of("local", [key]);
    assert.throws(() => set.version(deriveKeyId("aws", key)), { code: "UNKNOWN_KEY_ID" });
  });

  test("dispose wipes the workspace keys of every version", () => {
    const set = MasterKeySet.of("local", [randomBytes(32), randomBytes(32)]);
    const [primaryId, olderId] = set.keyIds as [string, string];
    const primaryKey = set.version(primaryId).workspaceKey("kubernetes");
    const olderKey = set.version(olderId).workspaceKey("kubernetes");
    set.dispose();
    assert.ok(isZero(primaryKey));
    assert.ok(isZero(olderKey));
  });
});
