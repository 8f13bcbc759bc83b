import { ConfigError, KmsEnvelopeError } from "../src/errors.js";
import { ProviderError } from "./types.js";

/** Refuses to wrap a key of the wrong size before any call reaches the key service. */
export function requireKeyToWrap(provider: string, key: Uint8Array, expectedBytes: number): void {
  if (key.length !== expectedBytes) {
    throw new KmsEnvelopeError(
      "INVALID_MASTER_KEY",
      `the ${provider} provider wraps ${expectedBytes}-byte keys, not ${key.length}-byte ones`,
    );
  }
}

/**
 * Refuses a wrapped key that cannot be one of the provider's ciphertexts (empty or too long)
 * before any call: the keyring entry is damaged, and only a backup can restore it.
 */
export function requireWrappedKey(
  provider: string,
  keyId: string,
  wrapped: Uint8Array,
  maxBytes: number,
): void {
  if (wrapped.length === 0 || wrapped.length > maxBytes) {
    throw new ProviderError(
      "corrupt",
      `the wrapped key for ${keyId} is ${wrapped.length} bytes, not a ${provider} ciphertext: restore the keyring entry from a backup`,
    );
  }
}

/** An integer option of `provider` within its limits, or a ConfigError naming the option. */
export function integerOption(
  provider: string,
  option: string,
  value: number,
  minimum: number,
  maximum: number,
): number {
  if (!Number.isInteger(value) || value < minimum || value > maximum) {
    throw new ConfigError(
      `${provider} provider option ${option}`,
      `${value} is not an integer from ${minimum} to ${maximum}`,
      "give one within those limits",
    );
  }
  return value;
}
