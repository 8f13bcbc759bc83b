import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { fieldContext, KMS_V1_CONTEXT, KMS_V2_CONTEXT } from "../../../src/crypto/contexts.js";
import { deriveKeyId, deriveWorkspaceKey } from "../../../src/crypto/derivation.js";
import { formatFieldValue, parseFieldValue } from "../../../src/crypto/field-value.js";
import { decodeKmsCiphertext, encodeKmsCiphertext } from "../../../src/crypto/kms-ciphertext.js";
import { open, SEALED_MIN_BYTES, seal } from "../../../src/crypto/sealed.js";
import {
  loadSecretbox,
  SECRETBOX_MAC_BYTES,
  SECRETBOX_NONCE_BYTES,
} from "../../../src/crypto/secretbox.js";
import { DecryptionFailedError, MalformedCiphertextError } from "../../../src/errors.js";

await loadSecretbox();

const GENERIC_MESSAGE = "decryption failed: the value is corrupt or does not belong here";

const masterKey = Uint8Array.from({ length: 32 }, (_, index) => index);
const otherMasterKey = Uint8Array.from({ length: 32 }, (_, index) => 0xa5 ^ index);
const keyId = deriveKeyId("local", masterKey);
const otherKeyId = deriveKeyId("local", otherMasterKey);
const workspaceKey = deriveWorkspaceKey(masterKey, "kubernetes");
const plaintext = Uint8Array.from({ length: 32 }, (_, index) => 0xc8 + index);
const nonce = Uint8Array.from({ length: SECRETBOX_NONCE_BYTES }, (_, index) => index);
const sealed = seal(workspaceKey, KMS_V2_CONTEXT, plaintext, nonce);
const kmsCiphertext = encodeKmsCiphertext(keyId, sealed);

// Layout of the KMS ciphertext (SPEC.md §2): 0x01 || lp(key id) || nonce || MAC || ciphertext.
const KEY_ID_BYTES = Buffer.byteLength(keyId, "utf8");
const FORMAT_AT = 0;
const LENGTH_AT = 1;
const KEY_ID_AT = 3;
const NONCE_AT = KEY_ID_AT + KEY_ID_BYTES;
const MAC_AT = NONCE_AT + SECRETBOX_NONCE_BYTES;
const BODY_AT = MAC_AT + SECRETBOX_MAC_BYTES;

function flipped(bytes: Uint8Array, index: number, mask = 0x01): Uint8Array {
  const copy = Uint8Array.from(bytes);
  copy[index] = (bytes[index] as number) ^ mask;
  return copy;
}

/** What the daemon does with a KMS ciphertext once the key id has picked the master key. */
function openKms(bytes: Uint8Array, key: Uint8Array = workspaceKey): Uint8Array {
  return open(key, KMS_V2_CONTEXT, decodeKmsCiphertext(bytes).sealed);
}

function thrown(action: () => unknown): unknown {
  try {
    action();
  } catch (error) {
    return error;
  }
  assert.fail("expected the action to throw");
}

function assertMalformed(action: () => unknown, detail: string): void {
  const error = thrown(action);
  assert.ok(error instanceof MalformedCiphertextError, `not a MalformedCiphertextError: ${error}`);
  assert.equal(error.code, "MALFORMED_CIPHERTEXT");
  assert.equal(error.message, `malformed ciphertext: ${detail}`);
}

function assertDecryptionFailed(action: () => unknown, label = ""): void {
  const error = thrown(action);
  assert.ok(
    error instanceof DecryptionFailedError,
    `${label} not a DecryptionFailedError: ${error}`,
  );
  assert.equal(error.code, "DECRYPTION_FAILED", label);
  assert.equal(error.message, GENERIC_MESSAGE, label);
}

describe("tampering with one byte of each part of a KMS ciphertext", () => {
  test("the untampered KMS ciphertext opens (the fixture is sound)", () => {
    assert.deepEqual(openKms(kmsCiphertext), plaintext);
    assert.equal(kmsCiphertext.length, BODY_AT + plaintext.length);
  });

  test("a ciphertext with any other format byte is refused as malformed before any key is used", () => {
    assertMalformed(() => openKms(flipped(kmsCiphertext, FORMAT_AT)), "unknown format byte 0x00");
    for (let format = 0; format <= 0xff; format++) {
      if (format === 0x01) continue;
      const tampered = Uint8Array.from(kmsCiphertext);
      tampered[FORMAT_AT] = format;
      const detail = `unknown format byte 0x${format.toString(16).padStart(2, "0")}`;
      assertMalformed(() => decodeKmsCiphertext(tampered), detail);
    }
  });

  test("a flipped high length byte makes the key id run past the end: malformed", () => {
    assertMalformed(
      () => openKms(flipped(kmsCiphertext, LENGTH_AT)),
      "length prefix runs past the end",
    );
  });

  test("a flipped low length byte moves bytes between key id and sealed, so the seal fails authentication", () => {
    const longer = flipped(kmsCiphertext, LENGTH_AT + 1, 0x01); // 22 -> 23
    assert.equal(decodeKmsCiphertext(longer).keyId.length, KEY_ID_BYTES + 1);
    assertDecryptionFailed(() => openKms(longer));
    const shorter = flipped(kmsCiphertext, LENGTH_AT + 1, 0x02); // 22 -> 20
    assert.equal(decodeKmsCiphertext(shorter).keyId, keyId.slice(0, KEY_ID_BYTES - 2));
    assertDecryptionFailed(() => openKms(shorter));
  });

  test("a length that leaves fewer than 40 sealed bytes is malformed", () => {
    const tampered = Uint8Array.from(kmsCiphertext);
    tampered[LENGTH_AT + 1] = KEY_ID_BYTES + (sealed.length - SEALED_MIN_BYTES) + 1;
    assertMalformed(() => openKms(tampered), `sealed part shorter than ${SEALED_MIN_BYTES} bytes`);
  });

  // The key id is not part of the authenticated data (neither the context nor the HKDF input
  // contain it): it only picks the master-key version. A flipped key-id byte therefore still
  // parses and, opened with the original key, still opens. What keeps this safe is that the key
  // id is a function of the master key: a changed id names either no key the daemon holds (the
  // daemon answers UNKNOWN_KEY_ID before opening) or another key, under which the seal fails.
  test("a flipped key-id byte still parses to another key id: the key id is not authenticated by the seal", () => {
    for (let index = KEY_ID_AT; index < NONCE_AT; index++) {
      const tampered = flipped(kmsCiphertext, index);
      const decoded = decodeKmsCiphertext(tampered);
      assert.notEqual(decoded.keyId, keyId, `byte ${index}`);
      assert.notEqual(decoded.keyId, otherKeyId, `byte ${index}`);
      assert.deepEqual(decoded.sealed, sealed, `byte ${index}`);
      assert.deepEqual(openKms(tampered), plaintext, `byte ${index}`);
    }
  });

  test("a ciphertext relabelled with another master key's id fails authentication under that key", () => {
    const relabelled = encodeKmsCiphertext(otherKeyId, sealed);
    assert.equal(decodeKmsCiphertext(relabelled).keyId, otherKeyId);
    assertDecryptionFailed(() =>
      openKms(relabelled, deriveWorkspaceKey(otherMasterKey, "kubernetes")),
    );
  });

  test("any flipped nonce byte fails authentication with the one generic error", () => {
    for (let index = NONCE_AT; index < MAC_AT; index++) {
      assertDecryptionFailed(() => openKms(flipped(kmsCiphertext, index)), `byte ${index}`);
    }
  });

  test("any flipped MAC byte fails authentication with the one generic error", () => {
    for (let index = MAC_AT; index < BODY_AT; index++) {
      assertDecryptionFailed(() => openKms(flipped(kmsCiphertext, index)), `byte ${index}`);
    }
  });

  test("any flipped ciphertext-body byte fails authentication with the one generic error", () => {
    for (let index = BODY_AT; index < kmsCiphertext.length; index++) {
      assertDecryptionFailed(() => openKms(flipped(kmsCiphertext, index)), `byte ${index}`);
    }
  });
});

describe("truncated, extended and empty KMS ciphertexts", () => {
  test("an empty KMS ciphertext is malformed", () => {
    assertMalformed(() => decodeKmsCiphertext(new Uint8Array(0)), "ciphertext is empty");
  });

  test("a KMS ciphertext cut inside its length prefix is malformed", () => {
    assertMalformed(
      () => decodeKmsCiphertext(kmsCiphertext.subarray(0, 1)),
      "truncated length prefix",
    );
    assertMalformed(
      () => decodeKmsCiphertext(kmsCiphertext.subarray(0, 2)),
      "truncated length prefix",
    );
  });

  test("a KMS ciphertext cut inside its key id is malformed", () => {
    assertMalformed(
      () => decodeKmsCiphertext(kmsCiphertext.subarray(0, NONCE_AT - 1)),
      "length prefix runs past the end",
    );
  });

  test("a KMS ciphertext with fewer than 40 sealed bytes is malformed", () => {
    for (const end of [NONCE_AT, MAC_AT, NONCE_AT + SEALED_MIN_BYTES - 1]) {
      assertMalformed(
        () => decodeKmsCiphertext(kmsCiphertext.subarray(0, end)),
        `sealed part shorter than ${SEALED_MIN_BYTES} bytes`,
      );
    }
  });

  test("a KMS ciphertext with an empty key id is malformed", () => {
    const empty = Buffer.concat([Uint8Array.of(0x01, 0x00, 0x00), sealed]);
    assertMalformed(() => decodeKmsCiphertext(empty), "empty key id");
  });

  test("a KMS ciphertext missing its last byte, or with one byte appended, fails authentication", () => {
    assertDecryptionFailed(() => openKms(kmsCiphertext.subarray(0, kmsCiphertext.length - 1)));
    assertDecryptionFailed(() => openKms(Buffer.concat([kmsCiphertext, Uint8Array.of(0x00)])));
  });

  test("open() refuses a sealed value shorter than nonce + MAC as malformed", () => {
    for (const length of [0, SECRETBOX_NONCE_BYTES, SEALED_MIN_BYTES - 1]) {
      assertMalformed(
        () => open(workspaceKey, KMS_V2_CONTEXT, sealed.subarray(0, length)),
        `sealed value shorter than ${SEALED_MIN_BYTES} bytes`,
      );
    }
  });

  test("seal() refuses a nonce that is not 24 bytes", () => {
    for (const length of [0, 23, 25]) {
      assert.throws(() => seal(workspaceKey, KMS_V2_CONTEXT, plaintext, new Uint8Array(length)), {
        name: "RangeError",
        message: "nonce must be 24 bytes",
      });
    }
  });
});

describe("a sealed value is bound to its context and workspace key", () => {
  const workspace = "ws_01";
  const fieldWorkspaceKey = deriveWorkspaceKey(masterKey, workspace);
  const secret = new Uint8Array(Buffer.from("secret", "utf8"));
  const fieldSealed = seal(fieldWorkspaceKey, fieldContext("users", "email", "rec_1"), secret);

  test("a value sealed for one record opens under that record's context", () => {
    assert.deepEqual(
      open(fieldWorkspaceKey, fieldContext("users", "email", "rec_1"), fieldSealed),
      secret,
    );
  });

  test("a value sealed for one record does not open under another record id", () => {
    assertDecryptionFailed(() =>
      open(fieldWorkspaceKey, fieldContext("users", "email", "rec_2"), fieldSealed),
    );
  });

  test("a value sealed for one field does not open under another field of the same record", () => {
    assertDecryptionFailed(() =>
      open(fieldWorkspaceKey, fieldContext("users", "phone", "rec_1"), fieldSealed),
    );
  });

  test("a value sealed for one resource does not open under another resource", () => {
    assertDecryptionFailed(() =>
      open(fieldWorkspaceKey, fieldContext("admins", "email", "rec_1"), fieldSealed),
    );
  });

  test("a value sealed in one workspace does not open under another workspace's key", () => {
    const otherWorkspaceKey = deriveWorkspaceKey(masterKey, "ws_02");
    assertDecryptionFailed(() =>
      open(otherWorkspaceKey, fieldContext("users", "email", "rec_1"), fieldSealed),
    );
  });

  test("a value sealed under one master key does not open under another master key's workspace key", () => {
    const otherWorkspaceKey = deriveWorkspaceKey(otherMasterKey, workspace);
    assertDecryptionFailed(() =>
      open(otherWorkspaceKey, fieldContext("users", "email", "rec_1"), fieldSealed),
    );
  });

  test("a KMS v2 value does not open as a KMS v1beta1 value, nor the reverse", () => {
    assertDecryptionFailed(() => open(workspaceKey, KMS_V1_CONTEXT, sealed));
    const v1Sealed = seal(workspaceKey, KMS_V1_CONTEXT, plaintext, nonce);
    assertDecryptionFailed(() => open(workspaceKey, KMS_V2_CONTEXT, v1Sealed));
  });

  test("a KMS value does not open as a field value, nor the reverse", () => {
    assertDecryptionFailed(() =>
      open(workspaceKey, fieldContext("users", "email", "rec_1"), sealed),
    );
    assertDecryptionFailed(() => open(fieldWorkspaceKey, KMS_V2_CONTEXT, fieldSealed));
  });

  test("length prefixes keep resource, field and record id apart: ('ab','c') is not ('a','bc')", () => {
    const left = fieldContext("ab", "c", "r");
    const right = fieldContext("a", "bc", "r");
    assert.notDeepEqual(left, right);
    const leftSealed = seal(fieldWorkspaceKey, left, secret);
    assertDecryptionFailed(() => open(fieldWorkspaceKey, right, leftSealed));
    const colonSealed = seal(fieldWorkspaceKey, fieldContext("users", "email", "a:b"), secret);
    assertDecryptionFailed(() =>
      open(fieldWorkspaceKey, fieldContext("users", "email:a", "b"), colonSealed),
    );
  });
});

describe("field values are parsed strictly", () => {
  const fieldWorkspaceKey = deriveWorkspaceKey(masterKey, "ws_01");
  const context = fieldContext("users", "email", "rec_1");
  // A 6-byte plaintext makes a 46-byte sealed value, whose base64 ends in "==".
  const fieldSealed = seal(
    fieldWorkspaceKey,
    context,
    new Uint8Array(Buffer.from("secret")),
    nonce,
  );
  const fieldValue = formatFieldValue(keyId, fieldSealed);
  const encoded = fieldValue.slice(`kmse:v1:${keyId}:`.length);

  test("the untampered field value parses and opens (the fixture is sound)", () => {
    assert.ok(encoded.endsWith("=="));
    const parsed = parseFieldValue(fieldValue);
    assert.equal(parsed.keyId, keyId);
    assert.equal(Buffer.from(open(fieldWorkspaceKey, context, parsed.sealed)).toString(), "secret");
  });

  test("a field value without the exact 'kmse:v1:' prefix is malformed", () => {
    const detail = "field value does not start with kmse:v1:";
    for (const text of [
      "",
      "secret",
      `kmse:v2:${keyId}:${encoded}`,
      `KMSE:v1:${keyId}:${encoded}`,
      ` ${fieldValue}`,
      `kmse:v1${keyId}:${encoded}`,
    ]) {
      assertMalformed(() => parseFieldValue(text), detail);
    }
  });

  test("a field value with an empty key id is malformed", () => {
    assertMalformed(
      () => parseFieldValue(`kmse:v1::${encoded}`),
      "field value has an empty key id",
    );
    assertMalformed(() => parseFieldValue(`kmse:v1:${encoded}`), "field value has an empty key id");
  });

  test("a field value in base64url, unpadded, or with whitespace is malformed, not repaired", () => {
    const detail = "field value is not canonical standard padded base64";
    const prefix = `kmse:v1:${keyId}:`;
    for (const body of [
      `-${encoded.slice(1)}`,
      `_${encoded.slice(1)}`,
      encoded.replace(/=+$/, ""),
      encoded.slice(0, -1),
      `${encoded}=`,
      `${encoded.slice(0, 8)} ${encoded.slice(8)}`,
      `${encoded}\n`,
      `${encoded.slice(0, 8)}=${encoded.slice(8)}`,
    ]) {
      assertMalformed(() => parseFieldValue(`${prefix}${body}`), detail);
    }
  });

  test("a field value whose base64 has non-zero padding bits is malformed, not normalised", () => {
    // With "==" padding the last character carries 4 unused bits; setting one still decodes
    // to the same bytes, so only a canonical re-encoding check can refuse it.
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const last = encoded.at(-3) as string;
    const sloppy = alphabet[alphabet.indexOf(last) | 1] as string;
    const body = `${encoded.slice(0, -3)}${sloppy}==`;
    assert.notEqual(body, encoded);
    assert.deepEqual(Buffer.from(body, "base64"), Buffer.from(encoded, "base64"));
    assertMalformed(
      () => parseFieldValue(`kmse:v1:${keyId}:${body}`),
      "field value is not canonical standard padded base64",
    );
  });

  test("a field value whose sealed part is shorter than 40 bytes is malformed", () => {
    const detail = `sealed part shorter than ${SEALED_MIN_BYTES} bytes`;
    assertMalformed(() => parseFieldValue(`kmse:v1:${keyId}:`), detail);
    assertMalformed(() => parseFieldValue(`kmse:v1:${keyId}:AAAA`), detail);
    const short = Buffer.from(fieldSealed.subarray(0, SEALED_MIN_BYTES - 1)).toString("base64");
    assertMalformed(() => parseFieldValue(`kmse:v1:${keyId}:${short}`), detail);
  });

  test("a field value with one flipped sealed byte parses but fails authentication", () => {
    for (let index = 0; index < fieldSealed.length; index++) {
      const parsed = parseFieldValue(formatFieldValue(keyId, flipped(fieldSealed, index)));
      assertDecryptionFailed(
        () => open(fieldWorkspaceKey, context, parsed.sealed),
        `byte ${index}`,
      );
    }
  });
});

describe("decryption failures are one generic error (no oracle)", () => {
  test("every authentication failure carries the same class, code and message, and no cause", () => {
    const fieldWorkspaceKey = deriveWorkspaceKey(masterKey, "ws_01");
    const fieldSealed = seal(fieldWorkspaceKey, fieldContext("users", "email", "rec_1"), plaintext);
    const failures: [string, () => unknown][] = [
      [
        "wrong master key",
        () => openKms(kmsCiphertext, deriveWorkspaceKey(otherMasterKey, "kubernetes")),
      ],
      ["wrong workspace", () => openKms(kmsCiphertext, deriveWorkspaceKey(masterKey, "other"))],
      ["nonce byte", () => openKms(flipped(kmsCiphertext, NONCE_AT))],
      ["MAC byte", () => openKms(flipped(kmsCiphertext, MAC_AT))],
      ["body byte", () => openKms(flipped(kmsCiphertext, BODY_AT))],
      ["truncated", () => openKms(kmsCiphertext.subarray(0, kmsCiphertext.length - 1))],
      ["wrong API context", () => open(workspaceKey, KMS_V1_CONTEXT, sealed)],
      [
        "wrong record",
        () => open(fieldWorkspaceKey, fieldContext("users", "email", "x"), fieldSealed),
      ],
      [
        "wrong field",
        () => open(fieldWorkspaceKey, fieldContext("users", "x", "rec_1"), fieldSealed),
      ],
    ];
    const errors = failures.map(([label, action]) => {
      const error = thrown(action);
      assert.ok(error instanceof DecryptionFailedError, label);
      return error;
    });
    assert.deepEqual(new Set(errors.map((error) => error.message)), new Set([GENERIC_MESSAGE]));
    assert.deepEqual(new Set(errors.map((error) => error.code)), new Set(["DECRYPTION_FAILED"]));
    assert.deepEqual(
      new Set(errors.map((error) => error.name)),
      new Set(["DecryptionFailedError"]),
    );
    for (const error of errors) assert.equal(error.cause, undefined);
  });
});
