import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, test } from "node:test";
import { FakeProvider } from "../../../providers/fake.js";
import { deriveKeyId } from "../../../src/crypto/derivation.js";
import { decodeKmsCiphertext } from "../../../src/crypto/kms-ciphertext.js";
import { loadSecretbox } from "../../../src/crypto/secretbox.js";
import { HealthMonitor } from "../../../src/keys/health-monitor.js";
import { MasterKeySet } from "../../../src/keys/master-key-set.js";
import { SealingService } from "../../../src/keys/sealing-service.js";
import { hasCode } from "../../support/error-assertions.js";

await loadSecretbox();

const GENERIC_MESSAGE = "decryption failed: the value is corrupt or does not belong here";

const currentKey = randomBytes(32);
const previousKey = randomBytes(32);
const strangerKey = randomBytes(32);

interface Rig {
  envelope: SealingService;
  fake: FakeProvider;
  monitor: HealthMonitor;
}

/** An SealingService over real keys, with custody health driven by the scripted fake provider. */
function rig(keys: Uint8Array[] = [currentKey, previousKey], gracePeriodMs = 60_000): Rig {
  const fake = new FakeProvider();
  const monitor = new HealthMonitor({
    check: (signal) => fake.checkHealth(signal),
    intervalMs: 60_000,
    gracePeriodMs,
    timeoutMs: 1_000,
  });
  const envelope = new SealingService({
    keys: MasterKeySet.of("local", keys),
    kmsWorkspace: "kubernetes",
    health: monitor,
  });
  return { envelope, fake, monitor };
}

async function suspended(): Promise<Rig> {
  const suspendedRig = rig([currentKey, previousKey], 0);
  suspendedRig.fake.setStanding("user");
  const snapshot = await suspendedRig.monitor.checkNow();
  assert.equal(snapshot.suspended, true);
  return suspendedRig;
}

const seed = randomBytes(32);

describe("SealingService: KMS ciphertexts", () => {
  test("v2 encrypt/decrypt round-trips and reports the primary key id", () => {
    const { envelope } = rig();
    const { ciphertext, keyId } = envelope.encryptKms("v2", seed);
    assert.equal(keyId, deriveKeyId("local", currentKey));
    assert.equal(keyId, envelope.primaryKeyId);
    assert.equal(decodeKmsCiphertext(ciphertext).keyId, keyId, "the key id travels inside");
    assert.deepEqual(Buffer.from(envelope.decryptKms("v2", ciphertext, keyId)), seed);
    assert.deepEqual(Buffer.from(envelope.decryptKms("v2", ciphertext)), seed);
  });

  test("v1beta1 encrypt/decrypt round-trips without a key id in the request", () => {
    const { envelope } = rig();
    const { ciphertext } = envelope.encryptKms("v1", seed);
    assert.deepEqual(Buffer.from(envelope.decryptKms("v1", ciphertext)), seed);
  });

  test("a ciphertext for a 32-byte seed stays well under the 1 KiB KMS limit", () => {
    const { ciphertext } = rig().envelope.encryptKms("v2", seed);
    assert.ok(ciphertext.length <= 1024);
    assert.equal(ciphertext.length, 1 + 2 + 22 + 24 + 16 + 32);
  });

  test("two encryptions of the same seed differ (fresh nonce) and both decrypt", () => {
    const { envelope } = rig();
    const first = envelope.encryptKms("v2", seed).ciphertext;
    const second = envelope.encryptKms("v2", seed).ciphertext;
    assert.notDeepEqual(first, second);
    assert.deepEqual(Buffer.from(envelope.decryptKms("v2", second)), seed);
  });

  test("a v1 ciphertext is refused under the v2 context (and vice versa) with DECRYPTION_FAILED", () => {
    const { envelope } = rig();
    const v1 = envelope.encryptKms("v1", seed).ciphertext;
    const v2 = envelope.encryptKms("v2", seed).ciphertext;
    assert.throws(
      () => envelope.decryptKms("v2", v1),
      hasCode("DECRYPTION_FAILED", GENERIC_MESSAGE),
    );
    assert.throws(
      () => envelope.decryptKms("v1", v2),
      hasCode("DECRYPTION_FAILED", GENERIC_MESSAGE),
    );
  });

  test("a key_id that differs from the one inside the ciphertext is KEY_ID_MISMATCH", () => {
    const { envelope } = rig();
    const { ciphertext } = envelope.encryptKms("v2", seed);
    const olderKeyId = deriveKeyId("local", previousKey);
    assert.throws(
      () => envelope.decryptKms("v2", ciphertext, olderKeyId),
      hasCode("KEY_ID_MISMATCH", /send the key_id Encrypt returned/),
    );
    assert.throws(() => envelope.decryptKms("v2", ciphertext, ""), hasCode("KEY_ID_MISMATCH"));
  });

  test("a ciphertext under a key this daemon does not hold is UNKNOWN_KEY_ID", () => {
    const { ciphertext, keyId } = rig([strangerKey]).envelope.encryptKms("v2", seed);
    assert.throws(
      () => rig().envelope.decryptKms("v2", ciphertext, keyId),
      hasCode("UNKNOWN_KEY_ID", new RegExp(keyId)),
    );
  });

  test("a ciphertext under a previous key version still decrypts after rotation", () => {
    const before = rig([previousKey]).envelope.encryptKms("v2", seed);
    const after = rig([currentKey, previousKey]).envelope;
    assert.notEqual(after.primaryKeyId, before.keyId);
    assert.deepEqual(Buffer.from(after.decryptKms("v2", before.ciphertext, before.keyId)), seed);
  });

  test("the KMS workspace is part of the key: another daemon workspace cannot decrypt", () => {
    const { ciphertext } = rig().envelope.encryptKms("v2", seed);
    const other = new SealingService({
      keys: MasterKeySet.of("local", [currentKey]),
      kmsWorkspace: "other-cluster",
      health: rig().monitor,
    });
    assert.throws(() => other.decryptKms("v2", ciphertext), hasCode("DECRYPTION_FAILED"));
  });

  test("a tampered ciphertext byte is DECRYPTION_FAILED, never a wrong plaintext", () => {
    const { envelope } = rig();
    const { ciphertext } = envelope.encryptKms("v2", seed);
    const keyIdEnd = 3 + (ciphertext[2] as number);
    for (const index of [keyIdEnd, keyIdEnd + 24, ciphertext.length - 1]) {
      const tampered = Uint8Array.from(ciphertext);
      tampered[index] = (tampered[index] as number) ^ 0x01;
      assert.throws(() => envelope.decryptKms("v2", tampered), hasCode("DECRYPTION_FAILED"));
    }
  });

  test("structurally broken input is MALFORMED_CIPHERTEXT", () => {
    const { envelope } = rig();
    const { ciphertext } = envelope.encryptKms("v2", seed);
    const badFormat = Uint8Array.from(ciphertext);
    badFormat[0] = 0x02;
    for (const input of [new Uint8Array(0), badFormat, ciphertext.subarray(0, 40)]) {
      assert.throws(() => envelope.decryptKms("v2", input), hasCode("MALFORMED_CIPHERTEXT"));
    }
  });

  test("ENCRYPTION_SUSPENDED: once the monitor is suspended, encrypt is refused", async () => {
    const { envelope } = await suspended();
    assert.throws(
      () => envelope.encryptKms("v2", seed),
      hasCode("ENCRYPTION_SUSPENDED", /\(user\).*restore access to the provider key/),
    );
    assert.throws(() => envelope.encryptKms("v1", seed), hasCode("ENCRYPTION_SUSPENDED"));
  });

  test("ENCRYPTION_SUSPENDED: once the monitor is suspended, decrypt is refused too", async () => {
    const healthy = rig().envelope.encryptKms("v2", seed);
    const { envelope } = await suspended();
    assert.throws(
      () => envelope.decryptKms("v2", healthy.ciphertext, healthy.keyId),
      hasCode("ENCRYPTION_SUSPENDED"),
    );
  });

  test("ENCRYPTION_SUSPENDED: requireUsable, which field batches pass first, refuses too", async () => {
    rig().envelope.requireUsable();
    const { envelope } = await suspended();
    assert.throws(() => envelope.requireUsable(), hasCode("ENCRYPTION_SUSPENDED"));
  });

  test("an unhealthy provider inside the grace period does not stop encryption", async () => {
    const { envelope, fake, monitor } = rig();
    fake.setStanding("throttled");
    const snapshot = await monitor.checkNow();
    assert.equal(snapshot.healthy, false);
    const { ciphertext } = envelope.encryptKms("v2", seed);
    assert.deepEqual(Buffer.from(envelope.decryptKms("v2", ciphertext)), seed);
  });

  test("encryption resumes when the provider recovers", async () => {
    const { envelope, fake, monitor } = await suspended();
    fake.setStanding("ok");
    await monitor.checkNow();
    const { ciphertext } = envelope.encryptKms("v2", seed);
    assert.deepEqual(Buffer.from(envelope.decryptKms("v2", ciphertext)), seed);
  });

  test("crypto answers from memory: no provider call per request", () => {
    const { envelope, fake } = rig();
    const { ciphertext } = envelope.encryptKms("v2", seed);
    envelope.decryptKms("v2", ciphertext);
    envelope.requireUsable();
    assert.deepEqual(fake.calls, { wrapKey: 0, unwrapKey: 0, checkHealth: 0 });
  });
});

describe("SealingService: identity and self-test", () => {
  test("keyIds lists every version primary first", () => {
    const { envelope } = rig([currentKey, previousKey]);
    assert.deepEqual(envelope.keyIds, [
      deriveKeyId("local", currentKey),
      deriveKeyId("local", previousKey),
    ]);
  });

  test("selfTest seals and opens a probe with the primary key without a provider call", () => {
    const { envelope, fake } = rig();
    assert.equal(envelope.selfTest(), true);
    assert.equal(fake.calls.checkHealth, 0);
  });
});
