import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, test } from "node:test";
import { deriveWorkspaceKey } from "../../../src/crypto/derivation.js";
import { computeLookupTokens } from "../../../src/crypto/lookup-token.js";
import { lookupTokens } from "../../../src/keys/field-lookup.js";
import { MasterKeySet } from "../../../src/keys/master-key-set.js";

const currentKey = randomBytes(32);
const previousKey = randomBytes(32);

const query = {
  workspace: "tenant-a",
  resource: "users.obot.obot.ai",
  field: "email",
  normalizers: ["trim", "lowercase"] as const,
  values: [" Alice@Example.com", "bob@example.com", "ALICE@EXAMPLE.COM\t"],
};

describe("lookupTokens", () => {
  test("each value gets its token under every loaded version, the primary's first, after the normalizers", () => {
    const keys = MasterKeySet.of("local", [currentKey, previousKey]);
    const answer = lookupTokens(keys, query);
    assert.equal(answer.keyId, keys.primary.keyId);
    const normalized = ["alice@example.com", "bob@example.com", "alice@example.com"];
    const expected = [currentKey, previousKey].map((masterKey, index) =>
      computeLookupTokens(
        keys.keyIds[index] as string,
        deriveWorkspaceKey(masterKey, query.workspace),
        query.resource,
        query.field,
        normalized,
      ),
    );
    assert.deepEqual(
      answer.tokens,
      normalized.map((_, value) => expected.map((tokens) => tokens[value])),
    );
    assert.equal(answer.tokens[0]?.[0], answer.tokens[2]?.[0], "equal after normalizing");
    assert.notEqual(answer.tokens[0]?.[0], answer.tokens[0]?.[1], "one token per version");
  });

  test("a rotation keeps the old version's token: what was indexed before still matches", () => {
    const before = lookupTokens(MasterKeySet.of("local", [previousKey]), query);
    const after = lookupTokens(MasterKeySet.of("local", [currentKey, previousKey]), query);
    assert.deepEqual(
      after.tokens.map((tokens) => tokens[1]),
      before.tokens.map((tokens) => tokens[0]),
    );
  });

  test("no values, no tokens", () => {
    const keys = MasterKeySet.of("local", [currentKey]);
    assert.deepEqual(lookupTokens(keys, { ...query, values: [] }).tokens, []);
  });
});
