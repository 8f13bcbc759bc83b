import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  formatFieldValue,
  isFieldValue,
  parseFieldValue,
} from "../../../src/crypto/field-value.js";
import { SEALED_MIN_BYTES } from "../../../src/crypto/sealed.js";
import { AWKWARD_CHARACTERS, outcome, runs, textMutationOf } from "./fuzz-support.js";

const PREFIX = "kmse:v1:";

// Key ids as the daemon makes them ("<provider>:<16 base64url chars>") and stranger ones.
const keyIds = fc.oneof(
  fc
    .tuple(
      fc.constantFrom("local", "aws", "azure", "gcp", "custom-provider"),
      fc.base64String({ minLength: 16, maxLength: 16 }),
    )
    .map(([provider, tag]) => `${provider}:${tag.replace(/[+/=]/g, "A")}`),
  fc.string({ unit: "binary", minLength: 1, maxLength: 30 }),
);
const sealedBytes = fc.uint8Array({ minLength: SEALED_MIN_BYTES, maxLength: 120 });
const validValues = fc.tuple(keyIds, sealedBytes).map(([keyId, sealed]) => ({
  keyId,
  sealed,
  text: formatFieldValue(keyId, sealed),
}));

// Text that gets past the prefix check more often than arbitrary strings would.
const fieldShapedText = fc.oneof(
  fc.string({ unit: "binary", maxLength: 120 }),
  fc.string({ maxLength: 120 }).map((rest) => PREFIX + rest),
  fc
    .tuple(
      fc.string({ maxLength: 30 }),
      fc.array(fc.constantFrom(...AWKWARD_CHARACTERS, "A", "Q", "w", "8"), { maxLength: 80 }),
    )
    .map(([keyId, body]) => `${PREFIX}${keyId}:${body.join("")}`),
);

describe("fuzz: field values (kmse:v1:<key id>:<base64>)", () => {
  it("arbitrary text never escapes parseFieldValue as anything but MalformedCiphertextError", () => {
    fc.assert(
      fc.property(fieldShapedText, (text) => {
        const result = outcome(() => parseFieldValue(text), ["MALFORMED_CIPHERTEXT"]);
        if (result.ok) {
          assert.ok(isFieldValue(text));
          assert.ok(result.value.keyId.length > 0);
          assert.ok(result.value.sealed.length >= SEALED_MIN_BYTES);
          assert.equal(formatFieldValue(result.value.keyId, result.value.sealed), text);
        }
      }),
      runs(2000),
    );
  });

  it("parseFieldValue inverts formatFieldValue (format∘parse is the identity on accepted text)", () => {
    fc.assert(
      fc.property(validValues, ({ keyId, sealed, text }) => {
        const parsed = parseFieldValue(text);
        assert.equal(parsed.keyId, keyId);
        assert.deepEqual(Uint8Array.from(parsed.sealed), sealed);
        assert.equal(formatFieldValue(parsed.keyId, parsed.sealed), text);
      }),
      runs(500),
    );
  });

  it("a near-valid field value (padding, whitespace, url-safe alphabet, unicode, case) is refused or is the same value", () => {
    fc.assert(
      fc.property(
        validValues.chain((value) =>
          textMutationOf(value.text).map((mutant) => ({ ...value, mutant })),
        ),
        ({ mutant }) => {
          const result = outcome(() => parseFieldValue(mutant), ["MALFORMED_CIPHERTEXT"]);
          // A mutation may still parse (e.g. a changed key id or base64 digit); it must then be
          // exactly the value it prints as, never a second spelling of some other value.
          if (result.ok) {
            assert.equal(formatFieldValue(result.value.keyId, result.value.sealed), mutant);
          }
        },
      ),
      runs(1500),
    );
  });

  it("url-safe base64, stripped padding and inner whitespace are always refused", () => {
    fc.assert(
      fc.property(
        fc.tuple(keyIds, sealedBytes).filter(([, sealed]) => sealed.length % 3 !== 0),
        fc.constantFrom("url-safe", "unpadded", "space"),
        ([keyId, sealed], how) => {
          const base64 = Buffer.from(sealed).toString("base64");
          const body =
            how === "url-safe"
              ? Buffer.from(sealed).toString("base64url")
              : how === "unpadded"
                ? base64.replace(/=+$/, "")
                : `${base64.slice(0, 4)} ${base64.slice(4)}`;
          const result = outcome(
            () => parseFieldValue(`${PREFIX}${keyId}:${body}`),
            ["MALFORMED_CIPHERTEXT"],
          );
          assert.equal(result.ok, false, `accepted ${how} base64`);
        },
      ),
      runs(300),
    );
  });
});
