import { isNormalizer, NORMALIZERS, type Normalizer } from "../crypto/lookup-token.js";
import { InvalidRequestError } from "../errors.js";
import type { LookupQuery } from "../keys/field-lookup.js";
import type { LookupRequest__Output } from "../wire/generated/kms_envelope/field/v1/LookupRequest.js";
import { checkName } from "./field-names.js";

// fatal: invalid UTF-8 is refused rather than replaced by U+FFFD, which would give two different
// values one token. ignoreBOM: a leading U+FEFF is part of the value; only trim may remove it.
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function normalizersFromWire(names: readonly string[]): Normalizer[] {
  const seen = new Set<Normalizer>();
  return names.map((name, index) => {
    if (!isNormalizer(name)) {
      throw new InvalidRequestError(
        `normalizers[${index}] is ${JSON.stringify(name.slice(0, 40))}: use one of ${NORMALIZERS.join(", ")}`,
      );
    }
    // An ordered set: a repeat is most likely a slip in a field map, and refusing it bounds the
    // work per value at three passes.
    if (seen.has(name)) {
      throw new InvalidRequestError(
        `normalizers[${index}] repeats ${name}: name each normalizer at most once`,
      );
    }
    seen.add(name);
    return name;
  });
}

/**
 * Validates a decoded Lookup request at the edge (SPEC.md §2.1). Messages name the part of the
 * request at fault and never quote a value; at most `maxValues` values per call.
 */
export function lookupQueryFromWire(
  request: LookupRequest__Output,
  maxValues: number,
): LookupQuery {
  checkName(request.workspace, "workspace");
  checkName(request.resource, "resource");
  checkName(request.field, "field");
  const normalizers = normalizersFromWire(request.normalizers);
  if (request.values.length > maxValues) {
    throw new InvalidRequestError(
      `the request has ${request.values.length} values; at most ${maxValues} (--max-fields-per-request): split it into smaller requests`,
    );
  }
  const values = request.values.map((value, index) => {
    try {
      return utf8.decode(value);
    } catch {
      throw new InvalidRequestError(
        `values[${index}] is not valid UTF-8: send the value as UTF-8 text`,
      );
    }
  });
  return {
    workspace: request.workspace,
    resource: request.resource,
    field: request.field,
    normalizers,
    values,
  };
}
