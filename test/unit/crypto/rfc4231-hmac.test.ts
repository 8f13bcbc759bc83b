import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";

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
  test("the vector file holds RFC 4231 test cases 1 and 2", () => {
    assert.deepEqual(
      vectors.cases.map((vector) => vector.name.slice(0, 3)),
      ["4.2", "4.3"],
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
