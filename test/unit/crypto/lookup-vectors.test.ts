import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { deriveKeyId, deriveWorkspaceKey } from "../../../src/crypto/derivation.js";
import {
  computeLookupTokens,
  deriveLookupKey,
  isNormalizer,
  type Normalizer,
  normalizeLookupValue,
  parseLookupToken,
} from "../../../src/crypto/lookup-token.js";

/** One known-answer case of SPEC.md §2.1 (test/vectors/lookup-v1.json). */
interface LookupVector {
  name: string;
  master_key_b64: string;
  key_id: string;
  workspace: string;
  resource: string;
  field: string;
  workspace_key_hex: string;
  lookup_key_hex: string;
  normalizers: string[];
  value: string;
  value_hex: string;
  normalized_hex: string;
  token: string;
}

// Computed by a Python script independent of src/ (the file's description says how); the
// implementation must reproduce every byte.
const vectors = (
  JSON.parse(readFileSync(new URL("../../vectors/lookup-v1.json", import.meta.url), "utf8")) as {
    cases: LookupVector[];
  }
).cases;

const hex = (bytes: Uint8Array | string) =>
  typeof bytes === "string"
    ? Buffer.from(bytes, "utf8").toString("hex")
    : Buffer.from(bytes).toString("hex");

function normalizersOf(vector: LookupVector): Normalizer[] {
  return vector.normalizers.map((name) => {
    assert.ok(isNormalizer(name), `${vector.name}: unknown normalizer ${name}`);
    return name;
  });
}

/** Where a token belongs and what it was computed from; equal places share a token. */
function placeOf(vector: LookupVector): string {
  return JSON.stringify([
    vector.key_id,
    vector.workspace,
    vector.resource,
    vector.field,
    vector.normalized_hex,
  ]);
}

describe("SPEC.md §2.1 known answers from lookup-v1.json", () => {
  for (const vector of vectors) {
    describe(vector.name, () => {
      const masterKey = new Uint8Array(Buffer.from(vector.master_key_b64, "base64"));
      const workspaceKey = deriveWorkspaceKey(masterKey, vector.workspace);

      test("the value is the text its hex spells, and the key id and W are SPEC.md §2's", () => {
        assert.equal(hex(vector.value), vector.value_hex);
        const provider = vector.key_id.slice(0, vector.key_id.lastIndexOf(":"));
        assert.equal(deriveKeyId(provider, masterKey), vector.key_id);
        assert.equal(hex(workspaceKey), vector.workspace_key_hex);
      });

      test("lookup key = HMAC-SHA256(W, 'kms-envelope/v1/lookup' || 0x00 || lp(resource) || lp(field))", () => {
        assert.equal(
          hex(deriveLookupKey(workspaceKey, vector.resource, vector.field)),
          vector.lookup_key_hex,
        );
      });

      test("the normalizers, applied in the order listed, give the normalized value", () => {
        assert.equal(
          hex(normalizeLookupValue(vector.value, normalizersOf(vector))),
          vector.normalized_hex,
        );
      });

      test("token = 'kmsl:v1:<key id>:' + base64url-no-pad(HMAC-SHA256(L, v'))[0:22]", () => {
        const normalized = normalizeLookupValue(vector.value, normalizersOf(vector));
        const [token] = computeLookupTokens(
          vector.key_id,
          workspaceKey,
          vector.resource,
          vector.field,
          [normalized],
        );
        assert.equal(token, vector.token);
      });

      test("parseLookupToken() gives back the key id and the 22-character tag", () => {
        const parsed = parseLookupToken(vector.token);
        assert.equal(parsed.keyId, vector.key_id);
        assert.equal(`kmsl:v1:${parsed.keyId}:${parsed.tag}`, vector.token);
        assert.equal(parsed.tag.length, 22);
      });
    });
  }
});

describe("lookup-v1.json covers the shapes it was written for", () => {
  const distinct = (pick: (vector: LookupVector) => string) => new Set(vectors.map(pick)).size;

  test("two workspaces, two resources, two fields and two master keys", () => {
    assert.ok(distinct((vector) => vector.workspace) >= 2);
    assert.ok(distinct((vector) => vector.resource) >= 2);
    assert.ok(distinct((vector) => vector.field) >= 2);
    assert.ok(distinct((vector) => vector.master_key_b64) >= 2);
  });

  test("every normalizer alone, in combination, in both orders of lowercase and nfc, and none", () => {
    const lists = new Set(vectors.map((vector) => vector.normalizers.join(",")));
    for (const list of ["", "trim", "lowercase", "nfc", "trim,lowercase", "trim,lowercase,nfc"])
      assert.ok(lists.has(list), `no case with normalizers [${list}]`);
    assert.ok(lists.has("nfc,lowercase") && lists.has("lowercase,nfc"));
  });

  test("non-ASCII values, an empty value and white space trimmed to nothing", () => {
    // A value is ASCII exactly when its UTF-8 byte count equals its character count.
    assert.ok(vectors.some((vector) => Buffer.byteLength(vector.value) > vector.value.length));
    assert.ok(vectors.some((vector) => vector.value === ""));
    assert.ok(vectors.some((vector) => vector.value !== "" && vector.normalized_hex === ""));
  });

  test("cases in the same place with the same normalized value share a token; all others differ", () => {
    const tokenOf = new Map<string, string>();
    for (const vector of vectors) {
      const place = placeOf(vector);
      assert.equal(tokenOf.get(place) ?? vector.token, vector.token, vector.name);
      tokenOf.set(place, vector.token);
    }
    assert.equal(new Set(tokenOf.values()).size, tokenOf.size);
    assert.ok(tokenOf.size < vectors.length, "some cases normalize to the same value");
  });
});
