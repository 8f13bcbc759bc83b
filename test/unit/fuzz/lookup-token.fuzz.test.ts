import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, it } from "node:test";
import fc from "fast-check";
import { deriveWorkspaceKey } from "../../../src/crypto/derivation.js";
import {
  computeLookupTokens,
  NORMALIZERS,
  type Normalizer,
  normalizeLookupValue,
  parseLookupToken,
} from "../../../src/crypto/lookup-token.js";
import { AWKWARD_CHARACTERS, outcome, runs, textMutationOf } from "./fuzz-support.js";

const masterKey = randomBytes(32);
const KEY_ID = "local:AAAAAAAAAAAAAAAA";

// Text a normalizer has work to do on: any code points (astral, combining marks, lone
// surrogates), String.prototype.trim's white space, and letters whose lowercase is special.
const TRICKY = [
  ...AWKWARD_CHARACTERS,
  "\u3000",
  "\u2003",
  "\u0085",
  "\u200b",
  "İ",
  "I",
  "ẞ",
  "ß",
  "Σ",
  "T\u0308",
  "e\u0301",
  "\u0301",
  "Å",
  "\u212b",
];
const text = fc.oneof(
  fc.string({ unit: "binary", maxLength: 24 }),
  fc
    .array(fc.oneof(fc.constantFrom(...TRICKY), fc.string({ maxLength: 2 })), { maxLength: 12 })
    .map((parts) => parts.join("")),
);
const wellFormedText = text.filter((value) => !/\p{Cs}/u.test(value));
const names = fc.string({ unit: "binary", maxLength: 12 });
const normalizerLists = fc
  .subarray([...NORMALIZERS])
  .chain((chosen) => fc.shuffledSubarray(chosen, { minLength: chosen.length }));

function tokenOf(
  workspace: string,
  resource: string,
  field: string,
  value: string,
  normalizers: readonly Normalizer[] = [],
): string {
  const workspaceKey = deriveWorkspaceKey(masterKey, workspace);
  const normalized = normalizeLookupValue(value, normalizers);
  return computeLookupTokens(KEY_ID, workspaceKey, resource, field, [normalized])[0] as string;
}

describe("fuzz: lookup normalizers (SPEC.md §2.1)", () => {
  for (const normalizer of NORMALIZERS) {
    it(`${normalizer} is idempotent: applying it twice is applying it once`, () => {
      fc.assert(
        fc.property(text, (value) => {
          const once = normalizeLookupValue(value, [normalizer]);
          assert.equal(normalizeLookupValue(once, [normalizer]), once);
        }),
        runs(1000),
      );
    });
  }

  it("trim, lowercase, nfc (the order field maps are advised to use) is idempotent as a whole", () => {
    fc.assert(
      fc.property(text, (value) => {
        const once = normalizeLookupValue(value, ["trim", "lowercase", "nfc"]);
        assert.equal(normalizeLookupValue(once, ["trim", "lowercase", "nfc"]), once);
      }),
      runs(1000),
    );
  });

  it("normalizers keep well-formed text well-formed (no lone surrogate is ever made)", () => {
    fc.assert(
      fc.property(wellFormedText, normalizerLists, (value, normalizers) => {
        assert.doesNotMatch(normalizeLookupValue(value, normalizers), /\p{Cs}/u);
      }),
      runs(500),
    );
  });
});

describe("fuzz: lookup tokens (SPEC.md §2.1)", () => {
  it("a token is deterministic, alone or in a batch, and parses back to its key id", () => {
    fc.assert(
      fc.property(
        names,
        names,
        names,
        fc.array(wellFormedText, { maxLength: 5 }),
        (workspace, resource, field, values) => {
          const workspaceKey = deriveWorkspaceKey(masterKey, workspace);
          const batch = computeLookupTokens(KEY_ID, workspaceKey, resource, field, values);
          assert.equal(batch.length, values.length);
          for (const [index, value] of values.entries()) {
            assert.equal(batch[index], tokenOf(workspace, resource, field, value));
            const parsed = parseLookupToken(batch[index] as string);
            assert.equal(parsed.keyId, KEY_ID);
            assert.match(parsed.tag, /^[A-Za-z0-9_-]{22}$/);
          }
        },
      ),
      runs(300),
    );
  });

  it("the same value in another workspace, resource or field never gets the same token", () => {
    const place = fc.tuple(names, names, names);
    fc.assert(
      fc.property(place, place, wellFormedText, (first, second, value) => {
        fc.pre(JSON.stringify(first) !== JSON.stringify(second));
        assert.notEqual(tokenOf(...first, value), tokenOf(...second, value));
      }),
      runs(500),
    );
  });

  it("names are length-prefixed: moving characters between resource and field changes the token", () => {
    fc.assert(
      fc.property(names, names, fc.nat(), (resource, field, cut) => {
        const joined = resource + field;
        const at = cut % (joined.length + 1);
        fc.pre(at !== resource.length);
        assert.notEqual(
          tokenOf("ws", resource, field, "v"),
          tokenOf("ws", joined.slice(0, at), joined.slice(at), "v"),
        );
      }),
      runs(300),
    );
  });

  it("values that normalize alike share a token; values that do not, never do", () => {
    fc.assert(
      fc.property(wellFormedText, wellFormedText, normalizerLists, (first, second, normalizers) => {
        const same =
          normalizeLookupValue(first, normalizers) === normalizeLookupValue(second, normalizers);
        const tokens = [first, second].map((value) =>
          tokenOf("ws", "users", "email", value, normalizers),
        );
        assert.equal(tokens[0] === tokens[1], same);
      }),
      runs(500),
    );
  });

  it("with trim and lowercase, white space around an ASCII value and its letter case never change the token", () => {
    const padding = fc
      .array(fc.constantFrom(" ", "\t", "\n", "\u00a0", "\u3000", "\u2028", "\ufeff"), {
        maxLength: 3,
      })
      .map((parts) => parts.join(""));
    fc.assert(
      fc.property(
        fc.string({ unit: "grapheme-ascii", maxLength: 20 }),
        padding,
        padding,
        (value, before, after) => {
          const asked = `${before}${value.toUpperCase()}${after}`;
          assert.equal(
            tokenOf("ws", "users", "email", asked, ["trim", "lowercase"]),
            tokenOf("ws", "users", "email", value.trim().toLowerCase(), []),
          );
        },
      ),
      runs(500),
    );
  });
});

describe("fuzz: lookup token parsing", () => {
  const valid = fc
    .tuple(names, fc.string({ maxLength: 8 }))
    .map(([field, value]) => tokenOf("ws", "users", field, value));

  it("arbitrary and near-valid text never escapes parseLookupToken as anything but MalformedCiphertextError", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ unit: "binary", maxLength: 60 }),
          fc.string({ maxLength: 50 }).map((rest) => `kmsl:v1:${rest}`),
          valid.chain((token) => textMutationOf(token)),
        ),
        (candidate) => {
          const result = outcome(() => parseLookupToken(candidate), ["MALFORMED_CIPHERTEXT"]);
          // Whatever is accepted is exactly the token it prints as: one spelling per token.
          if (result.ok) {
            assert.ok(result.value.keyId.length > 0);
            assert.equal(`kmsl:v1:${result.value.keyId}:${result.value.tag}`, candidate);
          }
        },
      ),
      runs(2000),
    );
  });
});
