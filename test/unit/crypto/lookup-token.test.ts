import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  computeLookupTokens,
  isNormalizer,
  parseLookupToken,
} from "../../../src/crypto/lookup-token.js";

describe("lookup tokens: normalizer names and token structure", () => {
  test("the normalizers are trim, lowercase and nfc; other names (and Object's own) are not", () => {
    for (const name of ["trim", "lowercase", "nfc"]) assert.equal(isNormalizer(name), true);
    for (const name of ["", "Trim", "NFC", "nfkc", "casefold", "toString", "__proto__"])
      assert.equal(isNormalizer(name), false, name);
  });

  test("one lookup key serves a batch: each value gets its own token, in order", () => {
    const workspaceKey = new Uint8Array(32).fill(7);
    const tokens = computeLookupTokens("local:k", workspaceKey, "users", "email", ["a", "b", "a"]);
    assert.equal(tokens.length, 3);
    assert.equal(tokens[0], tokens[2]);
    assert.notEqual(tokens[0], tokens[1]);
    assert.deepEqual(computeLookupTokens("local:k", workspaceKey, "users", "email", []), []);
  });

  for (const [text, detail] of [
    ["kmse:v1:local:abc:AAAAAAAAAAAAAAAAAAAAAA", "does not start with kmsl:v1:"],
    ["kmsl:v1::AAAAAAAAAAAAAAAAAAAAAA", "has an empty key id"],
    ["kmsl:v1:AAAAAAAAAAAAAAAAAAAAAA", "has an empty key id"],
    ["kmsl:v1:local:abc:AAAAAAAAAAAAAAAAAAAAA", "does not end with 22 base64url characters"],
    ["kmsl:v1:local:abc:AAAAAAAAAAAAAAAAAAAAAAA", "does not end with 22 base64url characters"],
    ["kmsl:v1:local:abc:AAAAAAAAAAAAAAAAAAAAA+", "does not end with 22 base64url characters"],
    ["kmsl:v1:local:abc:AAAAAAAAAAAAAAAAAAAA==", "does not end with 22 base64url characters"],
  ] as const) {
    test(`parseLookupToken refuses a token that ${detail}: ${text}`, () => {
      assert.throws(() => parseLookupToken(text), {
        code: "MALFORMED_CIPHERTEXT",
        message: `malformed ciphertext: lookup token ${detail}`,
      });
    });
  }
});
