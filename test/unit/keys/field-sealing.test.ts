import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, test } from "node:test";
import { fieldContext, KMS_V2_CONTEXT } from "../../../src/crypto/contexts.js";
import { parseFieldValue } from "../../../src/crypto/field-value.js";
import { open } from "../../../src/crypto/sealed.js";
import { loadSecretbox } from "../../../src/crypto/secretbox.js";
import { DecryptionFailedError, KmsEnvelopeError } from "../../../src/errors.js";
import {
  openRecords,
  type SealedFieldRecord,
  sealRecords,
} from "../../../src/keys/field-sealing.js";
import { MasterKeySet } from "../../../src/keys/master-key-set.js";
import { hasCode } from "../../support/error-assertions.js";

await loadSecretbox();

const GENERIC_MESSAGE = "decryption failed: the value is corrupt or does not belong here";

const currentKey = randomBytes(32);
const previousKey = randomBytes(32);
const strangerKey = randomBytes(32);

/** A key set over real keys, primary first. */
function keySet(keys: Uint8Array[] = [currentKey, previousKey]): MasterKeySet {
  return MasterKeySet.of("local", keys);
}

describe("sealRecords and openRecords", () => {
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
    const keys = keySet();
    const { records, keyId } = sealRecords(keys, [plain]);
    assert.equal(keyId, keys.primary.keyId);
    const [sealedRecord] = records as [SealedFieldRecord];
    assert.equal(sealedRecord.workspace, plain.workspace);
    assert.equal(sealedRecord.resource, plain.resource);
    assert.equal(sealedRecord.recordId, plain.recordId);
    for (const value of Object.values(sealedRecord.fields)) {
      assert.match(value, /^kmse:v1:local:[A-Za-z0-9_-]{16}:[A-Za-z0-9+/]+={0,2}$/);
      assert.equal(parseFieldValue(value).keyId, keyId);
    }
    const opened = openRecords(keys, records);
    assert.equal(opened.stale, false);
    assert.deepEqual(
      Object.fromEntries(
        Object.entries(opened.records[0]?.fields ?? {}).map(([k, v]) => [k, Buffer.from(v)]),
      ),
      { token: Buffer.from("ghp_exampleTokenValue"), empty: Buffer.alloc(0) },
    );
  });

  test("a sealed field opens with the SPEC §2 field context directly", () => {
    const keys = keySet();
    const [record] = sealRecords(keys, [plain]).records as [SealedFieldRecord];
    const { sealed } = parseFieldValue(record.fields.token as string);
    const workspaceKey = MasterKeySet.of("local", [currentKey]).primary.workspaceKey("tenant-a");
    const context = fieldContext("credentials", "token", "cred-1");
    assert.deepEqual(Buffer.from(open(workspaceKey, context, sealed)), plain.fields.token);
    assert.throws(() => open(workspaceKey, KMS_V2_CONTEXT, sealed), hasCode("DECRYPTION_FAILED"));
  });

  const moves: [string, (record: SealedFieldRecord) => SealedFieldRecord][] = [
    ["record id", (record) => ({ ...record, recordId: "cred-2" })],
    ["resource", (record) => ({ ...record, resource: "users" })],
    ["workspace", (record) => ({ ...record, workspace: "tenant-b" })],
    ["field", (record) => ({ ...record, fields: { other: record.fields.token as string } })],
  ];
  for (const [what, move] of moves) {
    test(`a value moved to another ${what} fails with DECRYPTION_FAILED`, () => {
      const keys = keySet();
      const [record] = sealRecords(keys, [plain]).records as [SealedFieldRecord];
      const moved = move({ ...record, fields: { token: record.fields.token as string } });
      assert.throws(() => openRecords(keys, [moved]), hasCode("DECRYPTION_FAILED"));
    });
  }

  test("the open error names the record index and field but never the value", () => {
    const keys = keySet();
    const sealedRecords = sealRecords(keys, [plain, { ...plain, recordId: "cred-2" }]).records;
    const token = sealedRecords[1]?.fields.token as string;
    const swapped: SealedFieldRecord[] = [
      sealedRecords[0] as SealedFieldRecord,
      { ...(sealedRecords[1] as SealedFieldRecord), fields: { secret: token } },
    ];
    assert.throws(
      () => openRecords(keys, swapped),
      (error: unknown) => {
        assert.ok(error instanceof KmsEnvelopeError);
        assert.equal(error.code, "DECRYPTION_FAILED");
        assert.equal(error.message, `record 1 field "secret": ${GENERIC_MESSAGE}`);
        assert.ok(error.cause instanceof DecryptionFailedError, "the original error is the cause");
        assert.ok(!error.message.includes(token));
        assert.ok(!error.message.includes(token.slice(token.lastIndexOf(":") + 1)));
        return true;
      },
    );
  });

  test("a plaintext passed where a sealed value belongs is MALFORMED and not echoed", () => {
    const keys = keySet();
    const record = { ...plain, fields: { password: "hunter2-plaintext" } };
    assert.throws(
      () => openRecords(keys, [record]),
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
    const [record] = sealRecords(keySet([strangerKey]), [plain]).records as [SealedFieldRecord];
    assert.throws(
      () => openRecords(keySet(), [record]),
      hasCode("UNKNOWN_KEY_ID", /^record 0 field "token": unknown key id/),
    );
  });

  test("stale is true when a value was sealed under a non-primary version", () => {
    const [old] = sealRecords(keySet([previousKey]), [plain]).records as [SealedFieldRecord];
    const keys = keySet([currentKey, previousKey]);
    const [fresh] = sealRecords(keys, [plain]).records as [SealedFieldRecord];
    assert.equal(openRecords(keys, [fresh]).stale, false);
    const opened = openRecords(keys, [fresh, old]);
    assert.equal(opened.stale, true);
    assert.deepEqual(Buffer.from(opened.records[1]?.fields.token ?? []), plain.fields.token);
  });
});
