import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, test } from "node:test";
import { FakeProvider } from "../../../providers/fake.js";
import { fieldContext, KMS_V2_CONTEXT } from "../../../src/crypto/contexts.js";
import { deriveKeyId } from "../../../src/crypto/derivation.js";
import { parseFieldValue } from "../../../src/crypto/field-value.js";
import { decodeKmsCiphertext } from "../../../src/crypto/kms-ciphertext.js";
import { open } from "../../../src/crypto/sealed.js";
import { loadSecretbox } from "../../../src/crypto/secretbox.js";
import { KmsEnvelopeError } from "../../../src/errors.js";
import { Envelope, type SealedRecord } from "../../../src/keys/envelope.js";
import { HealthMonitor } from "../../../src/keys/health-monitor.js";
import { MasterKeySet } from "../../../src/keys/master-key-set.js";

await loadSecretbox();

const GENERIC_MESSAGE = "decryption failed: the value is corrupt or does not belong here";

const currentKey = randomBytes(32);
const previousKey = randomBytes(32);
const strangerKey = randomBytes(32);

interface Rig {
  envelope: Envelope;
  fake: FakeProvider;
  monitor: HealthMonitor;
}

/** An Envelope over real keys, with custody health driven by the scripted fake provider. */
function rig(keys: Uint8Array[] = [currentKey, previousKey], gracePeriodMs = 60_000): Rig {
  const fake = new FakeProvider();
  const monitor = new HealthMonitor({
    check: (signal) => fake.checkHealth(signal),
    intervalMs: 60_000,
    gracePeriodMs,
    timeoutMs: 1_000,
  });
  const envelope = new Envelope({
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

function hasCode(code: string, message?: string | RegExp) {
  return (error: unknown): boolean => {
    assert.ok(error instanceof KmsEnvelopeError, `expected a KmsEnvelopeError, got ${error}`);
    assert.equal(error.code, code);
    if (typeof message === "string") assert.equal(error.message, message);
    else if (message !== undefined) assert.match(error.message, message);
    return true;
  };
}

const seed = randomBytes(32);

describe("Envelope: KMS ciphertexts", () => {
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
    const other = new Envelope({
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
    envelope.sealRecords([{ workspace: "w", resource: "r", recordId: "1", fields: {} }]);
    assert.deepEqual(fake.calls, { wrapKey: 0, unwrapKey: 0, checkHealth: 0 });
  });
});

describe("Envelope: field records", () => {
  const plain = {
    workspace: "tenant-a",
    resource: "credentials",
    recordId: "cred-1",
    fields: {
      token: Buffer.from("ghp_exampleTokenValue"),
      empty: new Uint8Array(0),
    },
  };

  test("seal/open round-trips every field and keeps the record identity", () => {
    const { envelope } = rig();
    const { records, keyId } = envelope.sealRecords([plain]);
    assert.equal(keyId, envelope.primaryKeyId);
    const [sealedRecord] = records as [SealedRecord];
    assert.equal(sealedRecord.workspace, plain.workspace);
    assert.equal(sealedRecord.resource, plain.resource);
    assert.equal(sealedRecord.recordId, plain.recordId);
    for (const value of Object.values(sealedRecord.fields)) {
      assert.match(value, /^kmse:v1:local:[A-Za-z0-9_-]{16}:[A-Za-z0-9+/]+={0,2}$/);
      assert.equal(parseFieldValue(value).keyId, keyId);
    }
    const opened = envelope.openRecords(records);
    assert.equal(opened.stale, false);
    assert.deepEqual(
      Object.fromEntries(
        Object.entries(opened.records[0]?.fields ?? {}).map(([k, v]) => [k, Buffer.from(v)]),
      ),
      { token: Buffer.from("ghp_exampleTokenValue"), empty: Buffer.alloc(0) },
    );
  });

  test("a sealed field opens with the SPEC §2 field context directly", () => {
    const { envelope } = rig();
    const [record] = envelope.sealRecords([plain]).records as [SealedRecord];
    const { sealed } = parseFieldValue(record.fields.token as string);
    const workspaceKey = MasterKeySet.of("local", [currentKey]).primary.workspaceKey("tenant-a");
    const context = fieldContext("credentials", "token", "cred-1");
    assert.deepEqual(Buffer.from(open(workspaceKey, context, sealed)), plain.fields.token);
    assert.throws(() => open(workspaceKey, KMS_V2_CONTEXT, sealed), hasCode("DECRYPTION_FAILED"));
  });

  const moves: [string, (record: SealedRecord) => SealedRecord][] = [
    ["record id", (record) => ({ ...record, recordId: "cred-2" })],
    ["resource", (record) => ({ ...record, resource: "users" })],
    ["workspace", (record) => ({ ...record, workspace: "tenant-b" })],
    ["field", (record) => ({ ...record, fields: { other: record.fields.token as string } })],
  ];
  for (const [what, move] of moves) {
    test(`a value moved to another ${what} fails with DECRYPTION_FAILED`, () => {
      const { envelope } = rig();
      const [record] = envelope.sealRecords([plain]).records as [SealedRecord];
      const moved = move({ ...record, fields: { token: record.fields.token as string } });
      assert.throws(() => envelope.openRecords([moved]), hasCode("DECRYPTION_FAILED"));
    });
  }

  test("the open error names the record index and field but never the value", () => {
    const { envelope } = rig();
    const sealedRecords = envelope.sealRecords([plain, { ...plain, recordId: "cred-2" }]).records;
    const token = sealedRecords[1]?.fields.token as string;
    const swapped: SealedRecord[] = [
      sealedRecords[0] as SealedRecord,
      { ...(sealedRecords[1] as SealedRecord), fields: { secret: token } },
    ];
    assert.throws(
      () => envelope.openRecords(swapped),
      (error: unknown) => {
        assert.ok(error instanceof KmsEnvelopeError);
        assert.equal(error.code, "DECRYPTION_FAILED");
        assert.equal(error.message, `record 1 field "secret": ${GENERIC_MESSAGE}`);
        assert.ok(!error.message.includes(token));
        assert.ok(!error.message.includes(token.slice(token.lastIndexOf(":") + 1)));
        return true;
      },
    );
  });

  test("a plaintext passed where a sealed value belongs is MALFORMED and not echoed", () => {
    const { envelope } = rig();
    const record = { ...plain, fields: { password: "hunter2-plaintext" } };
    assert.throws(
      () => envelope.openRecords([record]),
      (error: unknown) => {
        assert.ok(error instanceof KmsEnvelopeError);
        assert.equal(error.code, "MALFORMED_CIPHERTEXT");
        assert.match(error.message, /^record 0 field "password": malformed ciphertext/);
        assert.ok(!error.message.includes("hunter2"));
        return true;
      },
    );
  });

  test("a value under a key this daemon does not hold is UNKNOWN_KEY_ID with its position", () => {
    const [record] = rig([strangerKey]).envelope.sealRecords([plain]).records as [SealedRecord];
    assert.throws(
      () => rig().envelope.openRecords([record]),
      hasCode("UNKNOWN_KEY_ID", /^record 0 field "token": unknown key id/),
    );
  });

  test("stale is true when a value was sealed under a non-primary version", () => {
    const [old] = rig([previousKey]).envelope.sealRecords([plain]).records as [SealedRecord];
    const { envelope } = rig([currentKey, previousKey]);
    const [fresh] = envelope.sealRecords([plain]).records as [SealedRecord];
    assert.equal(envelope.openRecords([fresh]).stale, false);
    const opened = envelope.openRecords([fresh, old]);
    assert.equal(opened.stale, true);
    assert.deepEqual(Buffer.from(opened.records[1]?.fields.token ?? []), plain.fields.token);
  });

  test("ENCRYPTION_SUSPENDED: sealing and opening fields are refused once suspended", async () => {
    const sealedRecords = rig().envelope.sealRecords([plain]).records;
    const { envelope } = await suspended();
    assert.throws(() => envelope.sealRecords([plain]), hasCode("ENCRYPTION_SUSPENDED"));
    assert.throws(() => envelope.openRecords(sealedRecords), hasCode("ENCRYPTION_SUSPENDED"));
  });
});

describe("Envelope: identity and self-test", () => {
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
