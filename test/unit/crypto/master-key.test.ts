import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, test } from "node:test";
import { decodeMasterKey } from "../../../src/crypto/master-key.js";
import { KmsEnvelopeError } from "../../../src/errors.js";

function invalid(source: string, value: string, detail: RegExp) {
  return (error: unknown): boolean => {
    assert.ok(error instanceof KmsEnvelopeError);
    assert.equal(error.code, "INVALID_MASTER_KEY");
    assert.ok(error.message.startsWith(`${source} `), error.message);
    assert.match(error.message, detail);
    assert.match(error.message, /kms-envelope keygen/, "the message says what to do");
    assert.ok(!error.message.includes(value.trim()), "the message never echoes the value");
    return true;
  };
}

describe("decodeMasterKey", () => {
  test("standard base64 of exactly 32 bytes decodes to those bytes", () => {
    const key = randomBytes(32);
    assert.deepEqual(Buffer.from(decodeMasterKey(key.toString("base64"), "SOURCE")), key);
  });

  test("surrounding whitespace and a trailing newline are ignored", () => {
    const key = randomBytes(32);
    const decoded = decodeMasterKey(`  ${key.toString("base64")}\n`, "SOURCE");
    assert.deepEqual(Buffer.from(decoded), key);
  });

  test("the decoded key lives in its own 32-byte buffer, not a shared pool slab", () => {
    const decoded = decodeMasterKey(randomBytes(32).toString("base64"), "SOURCE");
    assert.equal(decoded.byteOffset, 0);
    assert.equal(decoded.buffer.byteLength, 32);
  });

  test("base64url, missing padding and stray characters are not standard base64", () => {
    const key = Buffer.alloc(32, 0xfb); // encodes with '+' and '/' in standard base64
    const standard = key.toString("base64");
    const samples = [
      key.toString("base64url"),
      standard.replace(/=+$/, ""),
      `${standard.slice(0, 10)}*${standard.slice(11)}`,
      "correct horse battery staple",
    ];
    for (const value of samples) {
      assert.throws(
        () => decodeMasterKey(value, "ENCRYPTION_MASTER_KEY"),
        invalid("ENCRYPTION_MASTER_KEY", value, /is not standard base64/),
      );
    }
  });

  test("valid base64 of any length but 32 bytes is refused naming the required size", () => {
    for (const length of [1, 16, 31, 33, 64]) {
      const value = randomBytes(length).toString("base64");
      assert.throws(
        () => decodeMasterKey(value, "KEYRING"),
        invalid("KEYRING", value, /must be base64 of exactly 32 bytes/),
        `length ${length}`,
      );
    }
  });
});
