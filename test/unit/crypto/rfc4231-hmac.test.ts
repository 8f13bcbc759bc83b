import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { describe, test } from "node:test";
import fc from "fast-check";
import { NativeHmacSha256 } from "../../../src/crypto/hmac-sha256.js";
import type { SodiumNative } from "../../../src/crypto/secretbox.js";

/** RFC 4231 §4 HMAC-SHA-256 cases (test/vectors/rfc4231-hmac-sha256.json). */
interface HmacVector {
  name: string;
  key_hex: string;
  data_hex: string;
  hmac_sha256_hex: string;
}

const vectors = JSON.parse(
  readFileSync(new URL("../../vectors/rfc4231-hmac-sha256.json", import.meta.url), "utf8"),
) as { cases: HmacVector[] };

// The key id and the workspace key (SPEC.md §2) are createHmac("sha256", masterKey) digests;
// the workspace key feeds its message in two update() calls, so both shapes are checked.
describe("RFC 4231 HMAC-SHA-256 known answers, through node:crypto createHmac as the core uses it", () => {
  test("the vector file holds RFC 4231 test cases 1, 2 and 6 (a key longer than a block)", () => {
    assert.deepEqual(
      vectors.cases.map((vector) => vector.name.slice(0, 3)),
      ["4.2", "4.3", "4.7"],
    );
  });

  for (const vector of vectors.cases) {
    describe(vector.name, () => {
      const key = Buffer.from(vector.key_hex, "hex");
      const data = Buffer.from(vector.data_hex, "hex");

      test("createHmac('sha256', key) over the data gives the published HMAC-SHA-256", () => {
        const digest = createHmac("sha256", key).update(data).digest("hex");
        assert.equal(digest, vector.hmac_sha256_hex);
      });

      test("feeding the data in two update() calls gives the same published HMAC-SHA-256", () => {
        const half = Math.floor(data.length / 2);
        const digest = createHmac("sha256", key)
          .update(data.subarray(0, half))
          .update(data.subarray(half))
          .digest("hex");
        assert.equal(digest, vector.hmac_sha256_hex);
      });

      test("a key given as a Uint8Array view gives the same published HMAC-SHA-256", () => {
        const view = new Uint8Array(key.length + 8).subarray(4, 4 + key.length);
        view.set(key);
        assert.equal(createHmac("sha256", view).update(data).digest("hex"), vector.hmac_sha256_hex);
      });
    });
  }
});

// The record-key HKDF's HMACs run on sodium-native's SHA-256 where it is the libsodium in use
// (derivation.ts); this machine has the addon (libsodium-secretbox.test.ts asserts it loads).
describe("NativeHmacSha256: HMAC-SHA-256 on sodium-native's SHA-256", () => {
  const hmac = new NativeHmacSha256(
    createRequire(import.meta.url)("sodium-native") as SodiumNative,
  );
  const mac = (key: Uint8Array, first: Uint8Array, second?: Uint8Array): string => {
    const out = new Uint8Array(32);
    hmac.macInto(out, key, first, second);
    return Buffer.from(out).toString("hex");
  };

  for (const vector of vectors.cases) {
    test(`${vector.name.slice(0, 16)}: the published HMAC, whole or with the data in two parts`, () => {
      const key = Buffer.from(vector.key_hex, "hex");
      const data = Buffer.from(vector.data_hex, "hex");
      assert.equal(mac(key, data), vector.hmac_sha256_hex);
      const half = Math.floor(data.length / 2);
      assert.equal(mac(key, data.subarray(0, half), data.subarray(half)), vector.hmac_sha256_hex);
    });
  }

  test("equals node:crypto's HMAC for any key and message, and leaves its inputs as they were", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 200 }),
        fc.uint8Array({ maxLength: 300 }),
        fc.uint8Array({ maxLength: 40 }),
        (key, first, second) => {
          const keyBefore = Buffer.from(key);
          const expected = createHmac("sha256", key).update(first).update(second).digest("hex");
          assert.equal(mac(key, first, second), expected);
          assert.deepEqual(Buffer.from(key), keyBefore);
        },
      ),
      { numRuns: 1000 },
    );
  });
});
