import assert from "node:assert/strict";
import { createHmac, hkdfSync } from "node:crypto";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { deriveRecordKey, KEY_BYTES } from "../../../src/crypto/derivation.js";

/** RFC 5869 Appendix A, SHA-256 cases (test/vectors/rfc5869-hkdf-sha256.json). */
interface HkdfVector {
  name: string;
  hash: string;
  ikm_hex: string;
  salt_hex: string;
  info_hex: string;
  length: number;
  prk_hex: string;
  okm_hex: string;
}

const vectors = JSON.parse(
  readFileSync(new URL("../../vectors/rfc5869-hkdf-sha256.json", import.meta.url), "utf8"),
) as { cases: HkdfVector[] };

const SHA256_BYTES = 32;

function fromHex(hex: string): Uint8Array {
  return new Uint8Array(Buffer.from(hex, "hex"));
}

function toHex(bytes: Uint8Array | ArrayBuffer): string {
  return Buffer.from(bytes instanceof ArrayBuffer ? new Uint8Array(bytes) : bytes).toString("hex");
}

describe("RFC 5869 HKDF-SHA256 known answers", () => {
  test("the vector file holds RFC 5869 test cases 1, 2 and 3, all SHA-256", () => {
    assert.equal(vectors.cases.length, 3);
    for (const vector of vectors.cases) assert.equal(vector.hash, "SHA-256");
  });

  for (const vector of vectors.cases) {
    describe(vector.name, () => {
      const ikm = fromHex(vector.ikm_hex);
      const salt = fromHex(vector.salt_hex);
      const info = fromHex(vector.info_hex);

      test("the published OKM and PRK have the lengths the RFC states", () => {
        assert.equal(fromHex(vector.okm_hex).length, vector.length);
        assert.equal(fromHex(vector.prk_hex).length, SHA256_BYTES);
      });

      test("HKDF-Extract: PRK = HMAC-SHA256(salt, IKM), an empty salt being 32 zero octets (RFC 5869 §2.2)", () => {
        const key = salt.length === 0 ? new Uint8Array(SHA256_BYTES) : salt;
        assert.equal(toHex(createHmac("sha256", key).update(ikm).digest()), vector.prk_hex);
      });

      test("HKDF-Expand: the first 32 OKM octets are T(1) = HMAC-SHA256(PRK, info || 0x01) (RFC 5869 §2.3)", () => {
        const t1 = createHmac("sha256", fromHex(vector.prk_hex))
          .update(info)
          .update(Uint8Array.of(0x01))
          .digest();
        assert.equal(toHex(t1), vector.okm_hex.slice(0, 2 * SHA256_BYTES));
      });

      // deriveRecordKey always asks for KEY_BYTES (32) octets. HKDF output of length L is
      // T(1) || T(2) || ... cut to L, so a 32-octet output is exactly the first 32 octets of
      // every longer output of the same inputs: the comparison below is valid only when the
      // published L is at least 32, which the first assertion checks.
      test("deriveRecordKey (HKDF-SHA256, L = 32) equals the first 32 octets of the published OKM", () => {
        assert.ok(vector.length >= KEY_BYTES, "a 32-octet prefix exists only when L >= 32");
        const recordKey = deriveRecordKey(ikm, salt, info);
        assert.equal(recordKey.length, KEY_BYTES);
        assert.equal(toHex(recordKey), vector.okm_hex.slice(0, 2 * KEY_BYTES));
      });

      // The octets past the 32nd cannot come out of deriveRecordKey, so the whole published OKM
      // (L = 42 or 82) is checked against node:crypto's hkdfSync, the function the core calls.
      test("node:crypto hkdfSync with the published L reproduces the whole OKM", () => {
        assert.equal(toHex(hkdfSync("sha256", ikm, salt, info, vector.length)), vector.okm_hex);
      });
    });
  }
});
