import { randomBytes, timingSafeEqual } from "node:crypto";
import type { TokenCredential } from "@azure/identity";
import {
  type CryptographyClient,
  KeyClient,
  type KeyClientOptions,
  type KeyVaultKey,
} from "@azure/keyvault-keys";
import { MASTER_KEY_BYTES } from "../src/crypto/master-key.js";
import { ConfigError } from "../src/errors.js";
import { type CallAbort, type CallOptions, type CallState, KeyVaultCalls } from "./azure-calls.js";
import {
  type AzureCredentialSource,
  azureCredentialSource,
  defaultCredential,
} from "./azure-credential.js";
import { classifyAzureError } from "./azure-errors.js";
import {
  type AzureWrapAlgorithm,
  algorithmOfWrappedKey,
  isKeyReadRefused,
  KEY_TYPES,
  unreadableKeyAlgorithm,
  usableWrapAlgorithm,
} from "./azure-key-checks.js";
import { type AzureKeyReference, isSameAzureKey, parseAzureKeyRef } from "./azure-key-ref.js";
import { requireKeyToWrap, requireWrappedKey } from "./preconditions.js";
import {
  type CustodyProvider,
  ProviderError,
  type ProviderErrorClass,
  type ProviderKeyDescription,
  type ProviderLogger,
  type ProviderOptions,
  type WrapContext,
} from "./types.js";

/** Provider name, the key-id prefix (SPEC.md §3). */
export const name = "azure";

/** Names the wrap algorithm when the identity may not read the key (RSA-OAEP-256 or A256KW). */
const ALGORITHM_VARIABLE = "KMS_ENVELOPE_AZURE_WRAP_ALGORITHM";

/** Options of the Azure Key Vault provider. */
export interface AzureKeyVaultProviderOptions {
  /** Versioned key URL `https://<vault>/keys/<name>/<version>`; the version is required. */
  keyRef: string;
  /** Microsoft Entra credential; DefaultAzureCredential (managed/workload identity, env) if absent. */
  credential?: TokenCredential;
  /**
   * Wrap algorithm; RSA-OAEP-256 by default. "auto" follows the key's type (JWK `kty`), read
   * from Key Vault when the identity has the keys `get` permission: A256KW for oct/oct-HSM keys,
   * RSA-OAEP-256 for RSA/RSA-HSM keys. Without `get`, an unwrap follows the wrapped key's length
   * and a wrap uses RSA-OAEP-256 in a vault (which holds no oct keys); a Managed HSM key then
   * needs the algorithm given.
   */
  algorithm?: AzureWrapAlgorithm | "auto";
  /** Deadline of one provider call, retries and token acquisition included; 10 s by default. */
  timeoutMs?: number;
  /** Retries of throttled (429) and transient (408, 5xx, network) failures; 2 by default. */
  maxRetries?: number;
  /** SDK client options (tests: `tlsOptions: { ca }`, `disableChallengeResourceVerification`). */
  clientOptions?: KeyClientOptions;
  /** Called with the class of every failed HTTP attempt, retried ones included (metrics). */
  onAttemptFailed?: (errorClass: ProviderErrorClass) => void;
  /** Told once when the identity may not read the key and its checks are skipped. */
  logger?: ProviderLogger;
  /**
   * The environment DefaultAzureCredential reads (process.env by default), to name the
   * credential in errors.
   */
  environment?: NodeJS.ProcessEnv;
}

const MAX_WRAPPED_BYTES = 1024;

/**
 * The `azure` provider (SPEC.md §3, CLOUD-PROTOCOLS.md §B.2): the master key is wrapped with
 * Key Vault wrapKey/unwrapKey under one pinned key version. Every call is bounded by
 * `timeoutMs`; the SDK retry policy retries 429/503 (honouring Retry-After) and other transient
 * failures (exponential backoff with jitter); failures are classified for health and metrics.
 */
export class AzureKeyVaultProvider implements CustodyProvider {
  readonly name = name;
  readonly #key: AzureKeyReference;
  // Undefined until the key's type is read when the algorithm follows it ("auto"); a pinned
  // version's type never changes, so it is read once.
  #algorithm: AzureWrapAlgorithm | undefined;
  readonly #timeoutMs: number;
  readonly #keys: KeyClient;
  readonly #cryptography: CryptographyClient;
  readonly #calls: KeyVaultCalls;
  readonly #logger: ProviderLogger | undefined;
  readonly #credentials: AzureCredentialSource;
  // False once Key Vault refused to read the key (no `get` permission): its checks are then
  // skipped for the provider's life instead of being refused, and logged, on every call.
  #keyReadable = true;
  // The last key wrapped or unwrapped, which a health check without `get` unwraps again.
  #lastWrapped: Uint8Array | undefined;
  #closed = false;

  constructor(options: AzureKeyVaultProviderOptions) {
    this.#key = parseAzureKeyRef(options.keyRef);
    const algorithm = options.algorithm ?? "RSA-OAEP-256";
    if (algorithm !== "auto" && KEY_TYPES[algorithm] === undefined) {
      throw new ConfigError(
        "azure algorithm",
        `${JSON.stringify(algorithm)} is not supported`,
        "give RSA-OAEP-256, A256KW or auto",
      );
    }
    this.#algorithm = algorithm === "auto" ? undefined : algorithm;
    this.#timeoutMs = options.timeoutMs ?? 10_000;
    this.#logger = options.logger;
    this.#credentials = azureCredentialSource(
      options.environment ?? process.env,
      options.credential !== undefined,
    );
    const maxRetries = options.maxRetries ?? options.clientOptions?.retryOptions?.maxRetries ?? 2;
    if (!(Number.isInteger(this.#timeoutMs) && this.#timeoutMs > 0)) {
      throw new ConfigError(
        "azure timeoutMs",
        `${this.#timeoutMs} is not a positive integer`,
        "give the deadline of one call in whole milliseconds",
      );
    }
    if (!(Number.isInteger(maxRetries) && maxRetries >= 0 && maxRetries <= 10)) {
      throw new ConfigError(
        "azure maxRetries",
        `${maxRetries} is not an integer from 0 to 10`,
        "give one within those limits",
      );
    }
    this.#calls = new KeyVaultCalls(
      this.#timeoutMs,
      (error, state, abort) => this.#classify(error, state, abort),
      options.onAttemptFailed,
    );
    const clientOptions = options.clientOptions ?? {};
    // One KeyClient, and the CryptographyClient sharing its pipeline: one challenge round trip
    // and one token cache for the GETs and the key operations.
    this.#keys = new KeyClient(this.#key.vaultUrl, options.credential ?? defaultCredential(), {
      ...clientOptions,
      retryOptions: {
        retryDelayInMs: 500,
        maxRetryDelayInMs: 4_000,
        ...clientOptions.retryOptions,
        maxRetries,
      },
      // Key Vault never redirects; following one would carry the bearer token elsewhere.
      redirectOptions: { handleRedirects: false },
      additionalPolicies: [
        ...(clientOptions.additionalPolicies ?? []),
        { policy: this.#calls.observer(), position: "perRetry" },
      ],
    });
    this.#cryptography = this.#keys.getCryptographyClient(this.#key.keyName, {
      keyVersion: this.#key.version,
    });
  }

  describe(): ProviderKeyDescription {
    return { provider: this.name, keyRef: this.#key.keyRef };
  }

  /**
   * Checks the key version is usable (a fresh GET, when the identity may read the key), then
   * wraps: one wrapkey call.
   */
  async wrapKey(key: Uint8Array, _context: WrapContext, signal?: AbortSignal): Promise<Uint8Array> {
    requireKeyToWrap(this.name, key, MASTER_KEY_BYTES);
    return this.#call("wrapKey", signal, (options, state) => this.#wrap(key, options, state));
  }

  /**
   * One unwrapkey call (plus the SDK's one-time GET of the key on first use). With "auto" the
   * algorithm is the one a wrap or health check read from the key, else the one the wrapped
   * key's length calls for, so unwrapping needs no `get`.
   */
  async unwrapKey(
    wrapped: Uint8Array,
    context: WrapContext,
    signal?: AbortSignal,
  ): Promise<Uint8Array> {
    requireWrappedKey("Key Vault", context.keyId, wrapped, MAX_WRAPPED_BYTES);
    return this.#call("unwrapKey", signal, (options, state) =>
      this.#unwrap(wrapped, options, state),
    );
  }

  /**
   * One GET of the pinned version: proves network, TLS, token and authorization, and that the
   * key exists, is enabled, within nbf/exp, of the right type and allows wrapKey/unwrapKey —
   * without sending key material or spending a cryptographic operation. An identity without
   * `get` is checked by what it may do instead: the last key wrapped or unwrapped is unwrapped
   * again (before any, a random key makes the round trip), so a disabled key, a revoked
   * unwrapKey or a dead credential still fail the check. The daemon's health loop re-unwraps
   * the keyring either way, which proves the unwrapKey permission itself (SPEC.md §3).
   */
  async checkHealth(signal?: AbortSignal): Promise<void> {
    await this.#call("checkHealth", signal, async (options, state) => {
      const key = await this.#readKey(options);
      if (key !== undefined) {
        this.#algorithm = usableWrapAlgorithm(key, this.#key.keyRef, this.#algorithm);
        return;
      }
      const last = this.#lastWrapped;
      if (last !== undefined) {
        (await this.#unwrap(last, options, state)).fill(0);
        return;
      }
      const sample = randomBytes(MASTER_KEY_BYTES);
      let unwrapped: Uint8Array | undefined;
      try {
        unwrapped = await this.#unwrap(await this.#wrap(sample, options, state), options, state);
        if (!timingSafeEqual(unwrapped, sample)) {
          throw new ProviderError(
            "corrupt",
            `Key Vault unwrapped a health probe with ${this.#key.keyRef} to other bytes: check for a proxy or endpoint rewriting requests`,
          );
        }
      } finally {
        sample.fill(0);
        unwrapped?.fill(0);
      }
    });
  }

  async close(): Promise<void> {
    // Nothing to release: the SDK keeps no key material, and its idle keep-alive sockets are
    // unref'd by Node's HTTP agent, so they never hold the process open.
    this.#closed = true;
    this.#lastWrapped = undefined;
    this.#calls.clear();
  }

  async #wrap(key: Uint8Array, options: CallOptions, state: CallState): Promise<Uint8Array> {
    // The service still wraps under a disabled or expired version (public-key operation), which
    // would store a master key nobody can unwrap: refuse up front when the key can be read.
    // Without `get`, keygen and rotate still catch it: they unwrap what they wrapped.
    const algorithm = await this.#wrapAlgorithm(options);
    const result = await this.#cryptography.wrapKey(algorithm, key, options);
    this.#checkKid("wrapKey", state.kid, result.keyID);
    const wrapped = Uint8Array.from(result.result);
    this.#lastWrapped = Uint8Array.from(wrapped);
    return wrapped;
  }

  async #unwrap(wrapped: Uint8Array, options: CallOptions, state: CallState): Promise<Uint8Array> {
    const algorithm = this.#algorithm ?? algorithmOfWrappedKey(wrapped.length, this.#key.keyRef);
    const result = await this.#cryptography.unwrapKey(algorithm, wrapped, options);
    try {
      this.#checkKid("unwrapKey", state.kid, result.keyID);
      if (result.result.length !== MASTER_KEY_BYTES) {
        throw new ProviderError(
          "corrupt",
          `Key Vault unwrapped ${result.result.length} bytes with ${this.#key.keyRef}, not a ${MASTER_KEY_BYTES}-byte master key: the wrapped key is damaged or is not a kms-envelope master key`,
        );
      }
      this.#lastWrapped = Uint8Array.from(wrapped);
      return Buffer.from(result.result);
    } finally {
      result.result.fill(0);
    }
  }

  // Every check of the pinned version but none of its material — enabled, within nbf/exp, of a
  // type the algorithm can use, permitting wrapKey and unwrapKey — when the key can be read;
  // the configured or inferred algorithm when it cannot.
  async #wrapAlgorithm(options: CallOptions): Promise<AzureWrapAlgorithm> {
    const key = await this.#readKey(options);
    if (key !== undefined) {
      this.#algorithm = usableWrapAlgorithm(key, this.#key.keyRef, this.#algorithm);
      return this.#algorithm;
    }
    return this.#algorithm ?? unreadableKeyAlgorithm(this.#key, ALGORITHM_VARIABLE);
  }

  // The pinned version, or undefined when the identity may not read it. The first refusal is
  // logged once; the key is not asked for again, so a least-privilege identity costs no 403
  // per call (a restart picks up a `get` granted later).
  async #readKey(options: CallOptions): Promise<KeyVaultKey | undefined> {
    if (!this.#keyReadable) return undefined;
    try {
      return await this.#getKey(options);
    } catch (error) {
      if (!isKeyReadRefused(error)) throw error;
      this.#keyReadable = false;
      this.#logger?.info(
        `azure: Key Vault refused to read ${this.#key.keyRef} (403, no keys get permission): the checks of its state, validity, type and permitted operations are skipped and the wrap and unwrap results decide; the wrap algorithm comes from ${ALGORITHM_VARIABLE} or is inferred. Grant get to restore the checks`,
      );
      return undefined;
    }
  }

  async #getKey(options: CallOptions): Promise<KeyVaultKey> {
    const key = await this.#keys.getKey(this.#key.keyName, {
      ...options,
      version: this.#key.version,
    });
    this.#checkKid("get", key.id);
    return key;
  }

  #checkKid(operation: string, ...reported: (string | undefined)[]): void {
    for (const kid of reported) {
      if (kid === undefined || isSameAzureKey(kid, this.#key)) continue;
      throw new ProviderError(
        "corrupt",
        `Key Vault answered ${operation} for ${kid.slice(0, 200)}, not the pinned key ${this.#key.keyRef}: check for a proxy or endpoint rewriting requests`,
      );
    }
  }

  async #call<T>(
    operation: string,
    signal: AbortSignal | undefined,
    run: (options: CallOptions, state: CallState) => Promise<T>,
  ): Promise<T> {
    if (this.#closed) throw new ProviderError("other", "azure provider is closed");
    return this.#calls.run(operation, signal, run);
  }

  #classify(error: unknown, state: CallState, abort: CallAbort): ProviderError {
    return classifyAzureError(error, {
      operation: state.operation,
      key: this.#key,
      algorithm: this.#algorithm,
      timeoutMs: this.#timeoutMs,
      attempts: state.attempts,
      lastStatus: state.lastStatus,
      credentials: this.#credentials,
      ...abort,
    });
  }
}

/**
 * Module entry point for the provider registry (`providers/registry.ts`). The algorithm follows
 * the key ("auto"), so RSA keys and Managed HSM oct-HSM keys both work from the command line;
 * KMS_ENVELOPE_AZURE_WRAP_ALGORITHM pins it, for an identity that may not read a Managed HSM key.
 */
export function createProvider(keyRef: string, options: ProviderOptions): AzureKeyVaultProvider {
  const pinned = options.environment[ALGORITHM_VARIABLE];
  if (pinned !== undefined && pinned !== "" && !Object.hasOwn(KEY_TYPES, pinned)) {
    throw new ConfigError(
      ALGORITHM_VARIABLE,
      `${JSON.stringify(pinned.slice(0, 40))} is not a wrap algorithm`,
      "give RSA-OAEP-256 (RSA keys) or A256KW (Managed HSM oct-HSM keys), or unset it",
    );
  }
  return new AzureKeyVaultProvider({
    keyRef,
    algorithm: pinned === undefined || pinned === "" ? "auto" : (pinned as AzureWrapAlgorithm),
    timeoutMs: options.timeoutMs,
    maxRetries: Math.max(0, options.maxAttempts - 1),
    onAttemptFailed: options.onAttemptFailed,
    environment: options.environment,
    ...(options.logger !== undefined && { logger: options.logger }),
  });
}
