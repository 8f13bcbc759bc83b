import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { fieldContext, KMS_V1_CONTEXT, KMS_V2_CONTEXT } from "../../../src/crypto/contexts.js";
import {
  deriveKeyId,
  deriveRecordKey,
  deriveWorkspaceKey,
} from "../../../src/crypto/derivation.js";
import {
  formatFieldValue,
  isFieldValue,
  parseFieldValue,
} from "../../../src/crypto/field-value.js";
import { decodeKmsCiphertext, encodeKmsCiphertext } from "../../../src/crypto/kms-ciphertext.js";
import { open, seal } from "../../../src/crypto/sealed.js";
import { loadSecretbox } from "../../../src/crypto/secretbox.js";

/** One known-answer case of SPEC.md §2; field cases carry resource/field/record_id/field_value. */
interface FormatVector {
  name: string;
  master_key_b64: string;
  key_id: string;
  workspace: string;
  context_hex: string;
  workspace_key_hex: string;
  record_key_hex: string;
  nonce_hex: string;
  plaintext_hex: string;
  sealed_hex: string;
  kms_ciphertext_hex?: string;
  resource?: string;
  field?: string;
  record_id?: string;
  field_value?: string;
}

// kms-envelope-v1.json comes from the independent implementation beside SPEC.md;
// kms-envelope-own-v1.json is this project's frozen set (1 KiB plaintext, non-ASCII workspace,
// empty field plaintext, a record id with a colon). Both must be reproduced byte for byte.
const VECTOR_FILES = ["kms-envelope-v1.json", "kms-envelope-own-v1.json"];

await loadSecretbox();

function loadVectors(file: string): FormatVector[] {
  const text = readFileSync(new URL(`../../vectors/${file}`, import.meta.url), "utf8");
  return (JSON.parse(text) as { cases: FormatVector[] }).cases;
}

function fromHex(hex: string): Uint8Array {
  return new Uint8Array(Buffer.from(hex, "hex"));
}

function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("hex");
}

/** The context rule of the vector files: field cases, then "v1 seed" names, then KMS v2. */
function contextOf(vector: FormatVector): Uint8Array {
  if (
    vector.resource !== undefined ||
    vector.field !== undefined ||
    vector.record_id !== undefined
  ) {
    assert.ok(vector.resource !== undefined && vector.field !== undefined);
    assert.ok(vector.record_id !== undefined);
    return fieldContext(vector.resource, vector.field, vector.record_id);
  }
  return vector.name.includes("v1 seed") ? KMS_V1_CONTEXT : KMS_V2_CONTEXT;
}

/** The provider is everything before the last ':' of the key id ("<provider>:<16 chars>"). */
function providerOf(keyId: string): string {
  return keyId.slice(0, keyId.lastIndexOf(":"));
}

for (const file of VECTOR_FILES) {
  describe(`SPEC.md §2 known answers from ${file}`, () => {
    const vectors = loadVectors(file);

    test("the file has cases, each either a KMS ciphertext case or a field-value case", () => {
      assert.ok(vectors.length > 0);
      for (const vector of vectors) {
        const isField = vector.field_value !== undefined;
        assert.equal(vector.kms_ciphertext_hex === undefined, isField, vector.name);
      }
    });

    for (const vector of vectors) {
      describe(vector.name, () => {
        const masterKey = new Uint8Array(Buffer.from(vector.master_key_b64, "base64"));
        const nonce = fromHex(vector.nonce_hex);
        const plaintext = fromHex(vector.plaintext_hex);
        const sealed = fromHex(vector.sealed_hex);
        const context = contextOf(vector);
        const workspaceKey = fromHex(vector.workspace_key_hex);

        test("the master key is 32 bytes and the nonce 24", () => {
          assert.equal(masterKey.length, 32);
          assert.equal(nonce.length, 24);
        });

        test("key id = '<provider>:' + base64url(HMAC-SHA256(M, 'kms-envelope/v1/key-id'))[0:16]", () => {
          assert.equal(deriveKeyId(providerOf(vector.key_id), masterKey), vector.key_id);
        });

        test("the context is the one SPEC.md §2 fixes for this case", () => {
          assert.equal(toHex(context), vector.context_hex);
        });

        test("workspace key = HMAC-SHA256(M, 'kms-envelope/v1/workspace' || 0x00 || lp(workspace))", () => {
          assert.equal(
            toHex(deriveWorkspaceKey(masterKey, vector.workspace)),
            vector.workspace_key_hex,
          );
        });

        test("record key = HKDF-SHA256(ikm = W, salt = nonce, info = context, 32 bytes)", () => {
          assert.equal(toHex(deriveRecordKey(workspaceKey, nonce, context)), vector.record_key_hex);
        });

        test("sealed = nonce || crypto_secretbox_easy(plaintext, nonce, K)", () => {
          const ours = seal(workspaceKey, context, plaintext, nonce);
          assert.equal(toHex(ours), vector.sealed_hex);
          assert.equal(ours.length, 24 + 16 + plaintext.length);
          assert.equal(toHex(ours.subarray(0, 24)), vector.nonce_hex);
        });

        test("open() of the sealed value under the same workspace key and context returns the plaintext", () => {
          assert.equal(toHex(open(workspaceKey, context, sealed)), vector.plaintext_hex);
        });

        const kmsCiphertextHex = vector.kms_ciphertext_hex;
        if (kmsCiphertextHex !== undefined) {
          test("KMS ciphertext = 0x01 || lp(key id) || sealed", () => {
            assert.equal(toHex(encodeKmsCiphertext(vector.key_id, sealed)), kmsCiphertextHex);
          });

          test("decodeKmsCiphertext() returns the key id and sealed bytes, which open to the plaintext", () => {
            const decoded = decodeKmsCiphertext(fromHex(kmsCiphertextHex));
            assert.equal(decoded.keyId, vector.key_id);
            assert.equal(toHex(decoded.sealed), vector.sealed_hex);
            assert.equal(toHex(open(workspaceKey, context, decoded.sealed)), vector.plaintext_hex);
          });
        }

        const fieldValue = vector.field_value;
        if (fieldValue !== undefined) {
          test("field value = 'kmse:v1:<key id>:' + standard padded base64(sealed), all ASCII", () => {
            const ours = formatFieldValue(vector.key_id, sealed);
            assert.equal(ours, fieldValue);
            assert.match(ours, /^[\x20-\x7e]+$/);
            assert.equal(isFieldValue(ours), true);
          });

          test("parseFieldValue() returns the key id and sealed bytes, which open to the plaintext", () => {
            const parsed = parseFieldValue(fieldValue);
            assert.equal(parsed.keyId, vector.key_id);
            assert.equal(toHex(parsed.sealed), vector.sealed_hex);
            assert.equal(toHex(open(workspaceKey, context, parsed.sealed)), vector.plaintext_hex);
          });
        }
      });
    }
  });
}

describe("our own frozen vectors cover the shapes they were written for", () => {
  const vectors = loadVectors("kms-envelope-own-v1.json");

  test("one case seals at least 1 KiB of plaintext", () => {
    assert.ok(vectors.some((vector) => vector.plaintext_hex.length / 2 >= 1024));
  });

  test("one case has a workspace name with non-ASCII characters", () => {
    // A workspace is ASCII exactly when its UTF-8 byte count equals its character count.
    assert.ok(
      vectors.some((vector) => Buffer.byteLength(vector.workspace) > vector.workspace.length),
    );
  });

  test("one field-value case has an empty plaintext", () => {
    assert.ok(
      vectors.some((vector) => vector.field_value !== undefined && vector.plaintext_hex === ""),
    );
  });

  test("one field-value case has a record id with a colon", () => {
    assert.ok(vectors.some((vector) => vector.record_id?.includes(":") === true));
  });
});
