import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { decodeCanonicalBase64, STANDARD_BASE64 } from "../../../src/crypto/canonical-base64.js";
import { AWKWARD_CHARACTERS, runs, textMutationOf } from "./fuzz-support.js";

const base64Alphabet = [
  ..."ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
] as const;

// Mostly base64 characters, with the ones that near-valid encodings get wrong mixed in.
const base64ishText = fc.oneof(
  fc.string({ unit: "binary", maxLength: 64 }),
  fc
    .array(fc.constantFrom(...base64Alphabet, ...AWKWARD_CHARACTERS), { maxLength: 64 })
    .map((chars) => chars.join("")),
);

describe("fuzz: canonical standard base64", () => {
  it("decodeCanonicalBase64 never throws and accepts a text only if it is the one spelling of its bytes", () => {
    fc.assert(
      fc.property(base64ishText, (text) => {
        const bytes = decodeCanonicalBase64(text);
        if (bytes !== undefined) assert.equal(Buffer.from(bytes).toString("base64"), text);
      }),
      runs(3000),
    );
  });

  it("accepts exactly the texts that match the standard base64 pattern and re-encode to themselves", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          base64ishText,
          fc
            .uint8Array({ maxLength: 60 })
            .chain((bytes) => textMutationOf(Buffer.from(bytes).toString("base64"))),
        ),
        (text) => {
          const expected =
            STANDARD_BASE64.test(text) && Buffer.from(text, "base64").toString("base64") === text;
          assert.equal(decodeCanonicalBase64(text) !== undefined, expected);
        },
      ),
      runs(3000),
    );
  });

  it("every byte string's standard padded base64 decodes back to it", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        const decoded = decodeCanonicalBase64(Buffer.from(bytes).toString("base64"));
        assert.deepEqual(decoded === undefined ? undefined : Uint8Array.from(decoded), bytes);
      }),
      runs(500),
    );
  });

  it("a mutated encoding decodes only when it is the canonical encoding of what it decodes to", () => {
    fc.assert(
      fc.property(
        fc
          .uint8Array({ maxLength: 60 })
          .chain((bytes) => textMutationOf(Buffer.from(bytes).toString("base64"))),
        (mutant) => {
          const bytes = decodeCanonicalBase64(mutant);
          if (bytes !== undefined) assert.equal(Buffer.from(bytes).toString("base64"), mutant);
        },
      ),
      runs(1500),
    );
  });
});
