import { deriveKeyId, deriveWorkspaceKey } from "../src/crypto/derivation.js";
import { decodeKmsCiphertext, encodeKmsCiphertext } from "../src/crypto/kms-ciphertext.js";
import { lengthPrefixed } from "../src/crypto/length-prefix.js";
import { decodeMasterKey } from "../src/crypto/master-key.js";
import { open, seal } from "../src/crypto/sealed.js";
import { loadSecretbox } from "../src/crypto/secretbox.js";
import { wipe } from "../src/crypto/wipe.js";
import { ConfigError, KmsEnvelopeError } from "../src/errors.js";
import {
  type DirectKeyProvider,
  ProviderError,
  type ProviderKeyDescription,
  type ProviderOptions,
  type WrapContext,
} from "./types.js";

/** Environment variable holding the primary master key (base64 of 32 bytes). */
export const MASTER_KEY_VARIABLE = "ENCRYPTION_MASTER_KEY";
/** Environment variable holding older master keys, comma-separated, that still decrypt. */
export const PREVIOUS_KEYS_VARIABLE = "ENCRYPTION_MASTER_KEY_PREVIOUS";

const WRAP_WORKSPACE = "kms-envelope/local-wrap";

/**
 * The `local` provider (SPEC.md §3): the master key sits in the environment. Meant for
 * development and small installs; it protects nothing the process environment does not.
 * wrapKey/unwrapKey seal under the primary environment key so keyrings can still be used.
 */
export class LocalProvider implements DirectKeyProvider {
  readonly name = "local";
  readonly #keys: Uint8Array[];
  #closed = false;

  /** Reads and validates the keys now, so a bad variable fails start-up, not a request. */
  constructor(environment: NodeJS.ProcessEnv) {
    const primary = environment[MASTER_KEY_VARIABLE];
    if (primary === undefined || primary.trim() === "") {
      throw new KmsEnvelopeError(
        "MISSING_MASTER_KEY",
        `${MASTER_KEY_VARIABLE} is not set: export it (\`export ${MASTER_KEY_VARIABLE}=$(kms-envelope keygen)\`) or start with --dev`,
      );
    }
    const previous = (environment[PREVIOUS_KEYS_VARIABLE] ?? "")
      .split(",")
      .map((entry) => entry.trim())
      .filter((entry) => entry !== "");
    this.#keys = [
      decodeMasterKey(primary, MASTER_KEY_VARIABLE),
      ...previous.map((entry, index) =>
        decodeMasterKey(entry, `${PREVIOUS_KEYS_VARIABLE} entry ${index + 1}`),
      ),
    ];
  }

  describe(): ProviderKeyDescription {
    return { provider: this.name, keyRef: LOCAL_KEY_REF };
  }

  loadMasterKeys(): Uint8Array[] {
    this.#assertOpen();
    return this.#keys.map((key) => Uint8Array.from(key));
  }

  async wrapKey(key: Uint8Array, context: WrapContext): Promise<Uint8Array> {
    this.#assertOpen();
    await loadSecretbox();
    const keyEncryptionKey = this.#primary();
    const wrapKey = deriveWorkspaceKey(keyEncryptionKey, WRAP_WORKSPACE);
    try {
      const sealed = seal(wrapKey, wrapContext(context), key);
      return encodeKmsCiphertext(deriveKeyId(this.name, keyEncryptionKey), sealed);
    } finally {
      wipe(wrapKey);
    }
  }

  async unwrapKey(wrapped: Uint8Array, context: WrapContext): Promise<Uint8Array> {
    this.#assertOpen();
    await loadSecretbox();
    let decoded: ReturnType<typeof decodeKmsCiphertext>;
    try {
      decoded = decodeKmsCiphertext(wrapped);
    } catch (error) {
      throw new ProviderError("corrupt", "wrapped key is malformed", { cause: error });
    }
    const keyEncryptionKey = this.#keys.find(
      (key) => deriveKeyId(this.name, key) === decoded.keyId,
    );
    if (keyEncryptionKey === undefined) {
      throw new ProviderError("user", `no ${MASTER_KEY_VARIABLE} version matches the wrapped key`);
    }
    const wrapKey = deriveWorkspaceKey(keyEncryptionKey, WRAP_WORKSPACE);
    try {
      return open(wrapKey, wrapContext(context), decoded.sealed);
    } catch (error) {
      throw new ProviderError("corrupt", "wrapped key failed authentication", { cause: error });
    } finally {
      wipe(wrapKey);
    }
  }

  async checkHealth(): Promise<void> {
    // The keys were validated at construction and live in memory: nothing remote can revoke them.
  }

  async close(): Promise<void> {
    this.#closed = true;
    wipe(...this.#keys);
  }

  // close() wiped the keys: answering afterwards would wrap under an all-zero key.
  #assertOpen(): void {
    if (this.#closed) throw new ProviderError("other", "the local provider is closed");
  }

  #primary(): Uint8Array {
    return this.#keys[0] as Uint8Array;
  }
}

const WRAP_LABEL = Buffer.from("kms-envelope/v1/local-wrap\u0000", "utf8");

// Binds a wrapped key to the key id it claims to be, so wrapped keys cannot be swapped.
function wrapContext(context: WrapContext): Uint8Array {
  return Buffer.concat([WRAP_LABEL, lengthPrefixed(context.keyId)]);
}

/** Provider-module name (see providers/registry.ts). */
export const name = "local";

/** The only key reference the local provider has: the environment variable. */
export const LOCAL_KEY_REF = `env:${MASTER_KEY_VARIABLE}`;

/** Provider-module factory: the local provider wraps keyring versions under the environment key. */
export function createProvider(keyRef: string, options: ProviderOptions): LocalProvider {
  if (keyRef !== LOCAL_KEY_REF) {
    throw new ConfigError(
      "local keyRef",
      `${JSON.stringify(keyRef)} is not the local provider's key reference`,
      `give ${LOCAL_KEY_REF}: the local provider's key is always that variable`,
    );
  }
  return new LocalProvider(options.environment);
}
