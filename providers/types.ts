/**
 * The custody-provider interface (`kms-envelope/providers`), for authors of custom providers: a
 * provider answers how the master key is kept (SPEC.md §3). A provider module exports `name`
 * (lowercase, the key-id prefix) and `createProvider(keyRef, options)` returning a
 * {@link CustodyProvider}; the daemon checks the module against this interface at start-up.
 *
 * @packageDocumentation
 */
import { ERROR_CODES, type ErrorCode, KmsEnvelopeError } from "../src/errors.js";

// Provider authors catch and extend the family their errors belong to from this entry alone.
export { ERROR_CODES, type ErrorCode, KmsEnvelopeError };

/**
 * How a provider failure should be treated (the classification aws-encryption-provider uses):
 * `user` — key disabled, access denied, key deleted: an operator must act, restarting won't help;
 * `throttled` — rate limited, retry later; `corrupt` — the wrapped key or a response is damaged;
 * `other` — outage, network, anything unexpected.
 */
export type ProviderErrorClass = "user" | "throttled" | "corrupt" | "other";

/**
 * A failure reported by a custody provider, classified for health, liveness and metrics. Its
 * code is always `PROVIDER_UNAVAILABLE`; the class says more. Other errors thrown by a provider
 * are treated as class `other`.
 */
export class ProviderError extends KmsEnvelopeError {
  /** How health and liveness treat the failure. */
  readonly errorClass: ProviderErrorClass;

  /**
   * @param errorClass - How the failure is treated; see {@link ProviderErrorClass}.
   * @param message - One line naming the provider and what to check; it reaches logs and the
   * `/healthz` text, so it must never contain key bytes or credentials.
   * @param options - `cause`: the SDK's error, kept for debugging (it must not carry key bytes
   * either).
   */
  constructor(errorClass: ProviderErrorClass, message: string, options?: { cause?: unknown }) {
    super("PROVIDER_UNAVAILABLE", message, options);
    this.name = "ProviderError";
    this.errorClass = errorClass;
  }
}

/** What a provider says about the key that protects the master key. Public, loggable. */
export interface ProviderKeyDescription {
  /** Provider name, the prefix of every key id it produces (`local`, `aws`, …). */
  provider: string;
  /**
   * The provider key reference: an ARN, a versioned key URL, a CryptoKey name,
   * `env:ENCRYPTION_MASTER_KEY` for `local`.
   */
  keyRef: string;
}

/**
 * Binds a wrapped master key to its use; cloud providers send it as encryption context or
 * additional authenticated data, so a wrapped key unwraps only with the context it was wrapped
 * with.
 */
export interface WrapContext {
  /** Key id of the master key being wrapped (public, `<provider>:` and 16 characters). */
  keyId: string;
}

/**
 * The one custody interface (SPEC.md §3): a provider answers how the master key is kept.
 * Implementations never log or return key bytes in errors.
 *
 * @remarks
 * The daemon calls the key service through it only at start, when the keyring changes, on
 * rotation and for health checks, never per request; calls may overlap. Failures should be
 * {@link ProviderError}s with a class; retries of throttled or transient failures belong inside
 * the call, within `timeoutMs` and `maxAttempts` of {@link ProviderOptions}.
 */
export interface CustodyProvider {
  /** Short provider name used as the key-id prefix; must equal the module's `name`. */
  readonly name: string;
  /** Describes the provider key (no secrets); makes no call. */
  describe(): ProviderKeyDescription;
  /**
   * Wraps a master key so it can be stored in a keyring file.
   *
   * @param key - The 32-byte master key; read it, do not keep or modify it.
   * @param context - Binds the result to the key's id.
   * @param signal - Aborted when the caller gives up; stop waiting and reject.
   * @returns The wrapped key, opaque to the caller (stored as base64 in the keyring).
   */
  wrapKey(key: Uint8Array, context: WrapContext, signal?: AbortSignal): Promise<Uint8Array>;
  /**
   * Unwraps what wrapKey produced; fails with a ProviderError. The caller checks that the result
   * is the key its id names (`corrupt` otherwise) and wipes it after use.
   *
   * @param wrapped - What wrapKey returned.
   * @param context - The context given to wrapKey.
   * @param signal - Aborted when the caller gives up; stop waiting and reject.
   * @returns A new array holding the 32-byte master key, owned by the caller.
   */
  unwrapKey(wrapped: Uint8Array, context: WrapContext, signal?: AbortSignal): Promise<Uint8Array>;
  /**
   * Resolves when the provider key is usable now; rejects with a classified ProviderError
   * (`user` for a disabled, deleted or inaccessible key). A call the daemon's deadline overtakes
   * counts as failed (`other`).
   *
   * @param signal - Aborted at the health check's deadline; stop waiting and reject.
   */
  checkHealth(signal?: AbortSignal): Promise<void>;
  /** Releases clients and wipes held key material; safe to call twice. */
  close(): Promise<void>;
}

/**
 * A provider that holds the master keys itself (the environment for `local`), so the daemon
 * loads them directly instead of unwrapping a keyring file.
 */
export interface DirectKeyProvider extends CustodyProvider {
  /**
   * Master keys (32 bytes each), primary first, then older versions that still decrypt. Returns
   * new copies each call; the caller wipes them.
   */
  loadMasterKeys(): Uint8Array[];
}

/** Provider operations that reach the key service, as metrics label them. */
export type ProviderOperation = "wrapKey" | "unwrapKey" | "checkHealth";

/**
 * Receives one finished provider call: the provider's name, the operation, `ok` or the
 * failure's class, and the duration in seconds. Never key material.
 */
export type ProviderCallObserver = (
  provider: string,
  operation: ProviderOperation,
  result: "ok" | ProviderErrorClass,
  seconds: number,
) => void;

/** Receives one failed attempt inside a provider call (retried or not): its error class. */
export type ProviderAttemptObserver = (provider: string, errorClass: ProviderErrorClass) => void;

/**
 * Where a provider reports, at info level, what an operator should know that is not a failure:
 * a check skipped because the identity lacks an optional permission, a fallback taken. One line
 * per lasting condition, said once per provider instance (not per call); never key material or
 * credentials. The daemon writes it to its log, the key commands to stderr.
 */
export interface ProviderLogger {
  /** Reports one fact, a single line that names the provider key and what the operator may do. */
  info(message: string): void;
}

/**
 * Knobs every provider factory (`createProvider(keyRef, options)`) receives; each provider uses
 * what applies to it. The daemon sets them from its flags.
 */
export interface ProviderOptions {
  /** Deadline of one provider call, retries included, in ms (the daemon's default: 10 s). */
  timeoutMs: number;
  /** Attempts per call for throttling and transient failures; 1 = no retry (default 3). */
  maxAttempts: number;
  /** Service endpoint override (private endpoints, emulators); the SDK default otherwise. */
  endpoint?: string | undefined;
  /** Cloud region, where the key reference does not say it. */
  region?: string | undefined;
  /** Environment the provider reads credentials and settings from. */
  environment: NodeJS.ProcessEnv;
  /** Where the provider reports skipped checks and fallbacks; nothing is reported without it. */
  logger?: ProviderLogger | undefined;
  /**
   * Called once for every failed attempt inside a provider call — including attempts that are
   * retried (throttling, transient failures), whether or not the call then succeeds — with the
   * attempt's error class only, never key material. The registry sets it for each provider (see
   * `observeAttempt`); providers that make a single attempt per call need not call it.
   */
  onAttemptFailed?: ((errorClass: ProviderErrorClass) => void) | undefined;
  /**
   * Receives every provider call (metrics). The registry calls it around each provider it
   * creates; providers receive it in their options but must not call it.
   */
  observe?: ProviderCallObserver | undefined;
  /**
   * Receives every failed attempt of every provider the registry creates (metrics), bound to
   * the provider's name as its `onAttemptFailed`. Providers receive it in their options but call
   * `onAttemptFailed` instead.
   */
  observeAttempt?: ProviderAttemptObserver | undefined;
}

/**
 * What a provider module exports, built-in or your own: `name`, the lowercase key-id prefix
 * (at most 32 characters of `a-z`, `0-9` and `-`), and a factory for one provider key. The
 * daemon and the key commands load a module by path or package name (`--provider`) and check
 * both exports and every instance at start-up.
 */
export interface ProviderModule {
  /** The provider's name, the prefix of every key id it produces. */
  name: string;
  /**
   * Creates a provider for one key reference.
   *
   * @param keyRef - The key reference as the operator wrote it (`--key-ref`).
   * @param options - Deadlines, retries, endpoint, region and the environment to read settings from.
   */
  createProvider(
    keyRef: string,
    options: ProviderOptions,
  ): CustodyProvider | Promise<CustodyProvider>;
}
