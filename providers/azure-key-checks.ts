import type { KeyVaultKey } from "@azure/keyvault-keys";
import type { AzureKeyReference } from "./azure-key-ref.js";
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

/**
 * Whether a failed key read is Key Vault refusing the identity the keys `get` permission (403:
 * AccessDenied for an access policy, ForbiddenByRbac for a role without keys/read), which makes
 * the read's checks optional rather than the call a failure.
 */
export function isKeyReadRefused(error: unknown): boolean {
  return (error as { name?: unknown; statusCode?: unknown } | null)?.statusCode === 403;
}

// A256KW (RFC 3394) adds one 8-byte block to the 32-byte master key; RSA-OAEP-256 gives one
// block of the modulus' size, and Key Vault's RSA keys are 2048, 3072 or 4096 bits.
const A256KW_WRAPPED_BYTES = 40;
const RSA_WRAPPED_BYTES = [256, 384, 512];

/**
 * The algorithm that made a wrapped master key, told by its length alone — exact, so unwrapping
 * needs neither the key's type nor the keys `get` permission. Another length is "corrupt".
 */
export function algorithmOfWrappedKey(length: number, keyRef: string): AzureWrapAlgorithm {
  if (length === A256KW_WRAPPED_BYTES) return "A256KW";
  if (RSA_WRAPPED_BYTES.includes(length)) return "RSA-OAEP-256";
  throw new ProviderError(
    "corrupt",
    `the wrapped key for ${keyRef} is ${length} bytes, which neither A256KW (40) nor RSA-OAEP-256 (256, 384 or 512) produces for a master key: restore the keyring entry from a backup`,
  );
}

/**
 * The wrap algorithm for a key the identity may not read: a vault holds no oct keys, so its keys
 * that can wrap are RSA keys (RSA-OAEP-256); a Managed HSM holds RSA-HSM and oct-HSM keys alike,
 * so there the operator must say which ("user" until then).
 */
export function unreadableKeyAlgorithm(
  key: AzureKeyReference,
  variable: string,
): AzureWrapAlgorithm {
  if (!/\.managedhsm\./i.test(new URL(key.vaultUrl).hostname)) return "RSA-OAEP-256";
  throw new ProviderError(
    "user",
    `cannot tell how to wrap with Managed HSM key ${key.keyRef} without the keys get permission: set ${variable}=A256KW for an oct-HSM key or ${variable}=RSA-OAEP-256 for an RSA-HSM key, or grant get`,
  );
}
