import {
  computeLookupTokens,
  type Normalizer,
  normalizeLookupValue,
} from "../crypto/lookup-token.js";
import type { MasterKeySet } from "./master-key-set.js";

/** What a Lookup call asks for: the tokens of values of one field, normalized as declared. */
export interface LookupQuery {
  readonly workspace: string;
  readonly resource: string;
  readonly field: string;
  readonly normalizers: readonly Normalizer[];
  readonly values: readonly string[];
}

/**
 * The lookup tokens (SPEC.md §2.1) of every value under every loaded master-key version,
 * primary first, so a lookup also matches values indexed before a rotation until rewrap moves
 * them. Pure over the key set, so a worker thread can run it with its own copy of it.
 */
export function lookupTokens(
  keys: MasterKeySet,
  query: LookupQuery,
): { tokens: string[][]; keyId: string } {
  const normalized = query.values.map((value) => normalizeLookupValue(value, query.normalizers));
  const byVersion = keys.keyIds.map((keyId) =>
    computeLookupTokens(
      keyId,
      keys.version(keyId).workspaceKey(query.workspace),
      query.resource,
      query.field,
      normalized,
    ),
  );
  return {
    tokens: normalized.map((_, index) => byVersion.map((tokens) => tokens[index] as string)),
    keyId: keys.primary.keyId,
  };
}
