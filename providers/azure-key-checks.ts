import type { KeyVaultKey } from "@azure/keyvault-keys";
import { ProviderError } from "./types.js";

/** Key-wrap algorithms: RSA-OAEP-256 for RSA keys, A256KW for Managed HSM `oct-HSM` keys. */
export type AzureWrapAlgorithm = "RSA-OAEP-256" | "A256KW";

/** The key types (JWK `kty`) each wrap algorithm works with. */
export const KEY_TYPES: Record<AzureWrapAlgorithm, string[]> = {
  "RSA-OAEP-256": ["RSA", "RSA-HSM"],
  A256KW: ["oct", "oct-HSM"],
};

/**
 * The algorithm to wrap with under a key of type `keyType`: the configured one, or when none
 * is configured, the one the key type calls for — RSA-OAEP-256 (RFC 7518 §4.3) for RSA keys,
 * A256KW (RFC 7518 §4.4, AES key wrap) for oct keys. A type the algorithm cannot use is "user".
 */
export function wrapAlgorithmFor(
  keyType: string | undefined,
  keyRef: string,
  configured: AzureWrapAlgorithm | undefined,
): AzureWrapAlgorithm {
  if (configured !== undefined) {
    if (KEY_TYPES[configured].includes(keyType ?? "")) return configured;
    throw user(
      `key ${keyRef} is of type ${keyType}, which ${configured} cannot use: use ${KEY_TYPES[configured].join(" or ")} keys for ${configured}`,
    );
  }
  const algorithms = Object.keys(KEY_TYPES) as AzureWrapAlgorithm[];
  const followed = algorithms.find((algorithm) => KEY_TYPES[algorithm].includes(keyType ?? ""));
  if (followed !== undefined) return followed;
  throw user(
    `key ${keyRef} is of type ${keyType}, which no supported algorithm can use: use an RSA or RSA-HSM key (RSA-OAEP-256) or an oct or oct-HSM key (A256KW)`,
  );
}

/**
 * Checks that a key version can wrap and unwrap now — enabled, within nbf/exp, of a type the
 * algorithm (configured, or following the type) can use, permitting wrapKey and unwrapKey —
 * and returns that algorithm; refuses ("user") saying what to change.
 */
export function usableWrapAlgorithm(
  key: KeyVaultKey,
  keyRef: string,
  configured: AzureWrapAlgorithm | undefined,
): AzureWrapAlgorithm {
  const { enabled, notBefore, expiresOn } = key.properties;
  const now = Date.now();
  const attributes = `az keyvault key set-attributes --id ${keyRef}`;
  if (enabled === false) {
    throw user(
      `key version ${keyRef} is disabled: enable it (\`${attributes} --enabled true\`) or rotate to an enabled version`,
    );
  }
  if (notBefore !== undefined && now < notBefore.getTime()) {
    throw user(
      `key version ${keyRef} is not valid before ${notBefore.toISOString()}: wait, or change it (\`${attributes} --not-before …\`)`,
    );
  }
  if (expiresOn !== undefined && now >= expiresOn.getTime()) {
    throw user(
      `key version ${keyRef} expired at ${expiresOn.toISOString()}: extend it (\`${attributes} --expires …\`) or rotate to a new version`,
    );
  }
  const algorithm = wrapAlgorithmFor(key.keyType, keyRef, configured);
  const missing = ["wrapKey", "unwrapKey"].filter((op) => !(key.keyOperations ?? []).includes(op));
  if (missing.length > 0) {
    throw user(
      `key ${keyRef} does not permit ${missing.join(" and ")}: allow them (\`${attributes} --ops wrapKey unwrapKey\`)`,
    );
  }
  return algorithm;
}

function user(message: string): ProviderError {
  return new ProviderError("user", message);
}
