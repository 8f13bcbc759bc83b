import { createHmac } from "node:crypto";
import { MalformedCiphertextError } from "../errors.js";
import { lengthPrefixed } from "./length-prefix.js";
import { wipe } from "./wipe.js";

/** The normalizers a lookup field may apply, by their names in requests (SPEC.md §2.1). */
export const NORMALIZERS = ["trim", "lowercase", "nfc"] as const;

/** One of {@link NORMALIZERS}. */
export type Normalizer = (typeof NORMALIZERS)[number];

// Each is an ECMAScript built-in, so the bytes are fixed by the language, not by a library.
// trim is String.prototype.trim: U+0009-U+000D, U+0020, U+00A0, U+1680, U+2000-U+200A, U+2028,
// U+2029, U+202F, U+205F, U+3000 and U+FEFF. It differs from Unicode's White_Space property in
// two places (U+0085 is kept, U+FEFF is removed); other implementations must copy this set.
// lowercase is locale-independent (İ gives i + U+0307, I gives i, ß stays ß), not case folding.
const APPLY: Readonly<Record<Normalizer, (text: string) => string>> = {
  trim: (text) => text.trim(),
  lowercase: (text) => text.toLowerCase(),
  nfc: (text) => text.normalize("NFC"),
};

/** True when `name` is one of {@link NORMALIZERS}. */
export function isNormalizer(name: string): name is Normalizer {
  return Object.hasOwn(APPLY, name);
}

/** The normalized value v': `normalizers` applied to `value` in the order given. */
export function normalizeLookupValue(value: string, normalizers: readonly Normalizer[]): string {
  return normalizers.reduce((text, normalizer) => APPLY[normalizer](text), value);
}

const LOOKUP_LABEL = Buffer.from("kms-envelope/v1/lookup\u0000", "utf8");
const PREFIX = "kmsl:v1:";
// 22 base64url characters keep 132 bits of the HMAC: collisions stay out of reach for any
// index, and tokens stay short enough to index cheaply (SPEC.md §2.1).
const TAG_CHARACTERS = 22;
const TAG = new RegExp(`^[A-Za-z0-9_-]{${TAG_CHARACTERS}}$`);

/**
 * Lookup key L = HMAC-SHA256(W, "kms-envelope/v1/lookup" || 0x00 || lp(resource) || lp(field))
 * (SPEC.md §2.1): one key per workspace, resource and field, so equal values in two fields
 * never share a token. The caller wipes it.
 */
export function deriveLookupKey(workspaceKey: Uint8Array, resource: string, field: string): Buffer {
  return createHmac("sha256", workspaceKey)
    .update(LOOKUP_LABEL)
    .update(lengthPrefixed(resource))
    .update(lengthPrefixed(field))
    .digest();
}

/**
 * The tokens of already normalized values, in their order: "kmsl:v1:<key id>:" +
 * base64url-no-pad(HMAC-SHA256(L, v'))[0:22] (SPEC.md §2.1), where `workspaceKey` is W of the
 * master-key version `keyId` names. L is derived once for the batch and wiped.
 */
export function computeLookupTokens(
  keyId: string,
  workspaceKey: Uint8Array,
  resource: string,
  field: string,
  normalizedValues: readonly string[],
): string[] {
  const lookupKey = deriveLookupKey(workspaceKey, resource, field);
  try {
    return normalizedValues.map((value) => {
      const tag = createHmac("sha256", lookupKey).update(value, "utf8").digest("base64url");
      return `${PREFIX}${keyId}:${tag.slice(0, TAG_CHARACTERS)}`;
    });
  } finally {
    wipe(lookupKey);
  }
}

/** A lookup token split into the master-key version it was computed under and its tag. */
interface ParsedLookupToken {
  keyId: string;
  tag: string;
}

/** Parses a lookup token, checking its structure only (no key can check a token's tag). */
export function parseLookupToken(text: string): ParsedLookupToken {
  if (!text.startsWith(PREFIX))
    throw new MalformedCiphertextError("lookup token does not start with kmsl:v1:");
  // The key id itself contains ':' ("local:…") and base64url never does, so the last ':' splits.
  const split = text.lastIndexOf(":");
  const keyId = text.slice(PREFIX.length, split);
  const tag = text.slice(split + 1);
  if (keyId.length === 0) throw new MalformedCiphertextError("lookup token has an empty key id");
  if (!TAG.test(tag)) {
    throw new MalformedCiphertextError(
      `lookup token does not end with ${TAG_CHARACTERS} base64url characters`,
    );
  }
  return { keyId, tag };
}
