import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, test } from "node:test";
import { DekSourceType, type EncryptedObject } from "../../../src/engine/kms/encrypted-object.js";
import { KmsV2SeedState, type WriteSeed } from "../../../src/engine/kms/kms-v2-seed-state.js";
import { ExtendedNonceGcmTransformer } from "../../../src/engine/transformers/aes-gcm-extended-nonce.js";
import { KmsEnvelopeError } from "../../../src/errors.js";

// The kms v2 provider's rules without a plugin or a timer: a fake clock is just numbers.

const TTL = 180_000;
const T0 = Date.parse("2026-01-01T00:00:00Z");

function seed(keyId: string): WriteSeed {
  return {
    keyId,
    encryptedDekSource: randomBytes(40),
    annotations: new Map(),
    transformer: new ExtendedNonceGcmTransformer(randomBytes(32), { provider: "kms:v2:p", keyId }),
  };
}

function refused(pattern: RegExp) {
  return (error: unknown): boolean => {
    assert.ok(error instanceof KmsEnvelopeError);
    assert.equal(error.code, "KMS_PLUGIN_FAILED");
    assert.match(error.message, /^kms v2 provider "p": /);
    assert.match(error.message, pattern);
    return true;
  };
}

const healthy = (keyId: string, version = "v2") => ({ version, healthz: "ok", keyId });

describe("KmsV2SeedState: Status answers", () => {
  test("healthz other than ok, an unknown version, or a bad key id is a problem", () => {
    const state = new KmsV2SeedState("p", TTL);
    assert.match(
      state.statusProblem({ version: "v2", healthz: "down", keyId: "k" }) ?? "",
      /unexpected healthz status: "down"/,
    );
    assert.match(state.statusProblem(healthy("k", "v3")) ?? "", /expected KMSv2 API version v2/);
    assert.equal(state.statusProblem(healthy("")), "Status: keyID is empty");
    assert.equal(new KmsV2SeedState("p", TTL).statusProblem(healthy("k", "v2beta1")), undefined);
  });

  test("the first accepted version is pinned: a later change is a problem", () => {
    const state = new KmsV2SeedState("p", TTL);
    assert.equal(state.statusProblem(healthy("k", "v2")), undefined);
    assert.equal(
      state.statusProblem(healthy("k", "v2beta1")),
      "KMSv2 API version should not change, was v2, now v2beta1",
    );
  });
});

describe("KmsV2SeedState: the write seed", () => {
  test("before the first healthy check, writes and reads are refused naming the last problem", () => {
    const state = new KmsV2SeedState("p", TTL);
    assert.throws(() => state.forWrite(T0, "connection refused"), refused(/connection refused/));
    assert.throws(() => state.forRead("connection refused"), refused(/since start/));
    assert.equal(state.needsSeed("k1", T0), true);
  });

  test("a seed is usable for writes until writeTtl after the check that began before it", () => {
    const state = new KmsV2SeedState("p", TTL);
    const first = seed("k1");
    assert.equal(state.install(first, T0), undefined);
    assert.equal(state.forWrite(T0 + TTL, undefined), first);
    assert.throws(
      () => state.forWrite(T0 + TTL + 1, "plugin down"),
      refused(/expired at 2026-01-01T00:03:00.000Z .*\(plugin down\)/),
    );
    assert.equal(state.forRead("plugin down"), first, "reads never expire");
  });

  test("a healthy check under the same key id extends the seed instead of replacing it", () => {
    const state = new KmsV2SeedState("p", TTL);
    const first = seed("k1");
    state.install(first, T0);
    assert.equal(state.needsSeed("k1", T0 + 60_000), false);
    assert.equal(state.expiresAt, T0 + 60_000 + TTL);
    assert.equal(state.forWrite(T0 + TTL + 1, undefined), first);
  });

  test("a new key id asks for a new seed; install hands back the old one for disposal", () => {
    const state = new KmsV2SeedState("p", TTL);
    const first = seed("k1");
    state.install(first, T0);
    assert.equal(state.needsSeed("k2", T0 + 1), true);
    const second = seed("k2");
    assert.equal(state.install(second, T0 + 1), first);
    assert.equal(state.forWrite(T0 + 2, undefined).keyId, "k2");
  });
});

describe("KmsV2SeedState: Encrypt answers and stale reads", () => {
  const answer = (keyId: string) => ({
    ciphertext: randomBytes(40),
    keyId,
    annotations: new Map<string, Uint8Array>(),
  });

  test("an Encrypt key id that differs from Status's is refused, by hash", () => {
    const state = new KmsV2SeedState("p", TTL);
    assert.equal(state.encryptProblem(answer("k1"), "k1"), undefined);
    assert.match(
      state.encryptProblem(answer("k2"), "k1") ?? "",
      /^Encrypt: Encrypt returned key id sha256:[0-9a-f]{64} but Status reported sha256:[0-9a-f]{64}$/,
    );
    assert.equal(
      state.encryptProblem({ ...answer("k1"), ciphertext: new Uint8Array(0) }, "k1"),
      "Encrypt: encryptedDEKSource is empty",
    );
  });

  test("a read is stale under another key id or the older AES-GCM-key mode", () => {
    const state = new KmsV2SeedState("p", TTL);
    const current = seed("k2");
    const object = (keyId: string, dekSourceType: DekSourceType): EncryptedObject => ({
      encryptedData: new Uint8Array(1),
      keyId,
      encryptedDekSource: new Uint8Array(1),
      annotations: new Map(),
      dekSourceType,
    });
    assert.equal(
      state.isStale(object("k2", DekSourceType.HkdfSha256XNonceAesGcmSeed), current),
      false,
    );
    assert.equal(
      state.isStale(object("k1", DekSourceType.HkdfSha256XNonceAesGcmSeed), current),
      true,
    );
    assert.equal(state.isStale(object("k2", DekSourceType.AesGcmKey), current), true);
  });
});

describe("KeyedTransformer: zeroed when dropped", () => {
  test("after dispose the transformer refuses to work rather than use an all-zero key", async () => {
    const transformer = seed("k1").transformer;
    const stored = await transformer.toStorage(Buffer.from("x"), Buffer.from("ad"));
    transformer.dispose();
    assert.equal(transformer.disposed, true);
    await assert.rejects(
      transformer.toStorage(Buffer.from("x"), Buffer.from("ad")),
      /disposed: its key is wiped/,
    );
    await assert.rejects(transformer.fromStorage(stored.data, Buffer.from("ad")), /disposed/);
  });
});
