import { KmsEnvelopeError } from "../src/errors.js";

/**
 * How a provider failure should be treated (the classification aws-encryption-provider uses):
 * `user` — key disabled, access denied, key deleted: an operator must act, restarting won't help;
 * `throttled` — rate limited, retry later; `corrupt` — the wrapped key or a response is damaged;
 * `other` — outage, network, anything unexpected.
 */
export type ProviderErrorClass = "user" | "throttled" | "corrupt" | "other";

/** A failure reported by a custody provider, classified for health, liveness and metrics. */
export class ProviderError extends KmsEnvelopeError {
  /** How health and liveness treat the failure. */
  readonly errorClass: ProviderErrorClass;

  constructor(errorClass: ProviderErrorClass, message: string, options?: { cause?: unknown }) {
    super("PROVIDER_UNAVAILABLE", message, options);
    this.name = "ProviderError";
    this.errorClass = errorClass;
  }
}

/** What a provider says about the key that protects the master key. Public, loggable. */
export interface ProviderKeyDescription {
  /** Provider name, the prefix of every key id it produces ("local", "aws", …). */
  provider: string;
  /** The provider key reference: an ARN, a versioned key URL, a CryptoKey name, "env". */
  keyRef: string;
}

/** Binds a wrapped master key to its use; cloud providers send it as encryption context. */
export interface WrapContext {
  /** Key id of the master key being wrapped (public). */
  keyId: string;
}

/**
 * The one custody interface (SPEC.md §3): a provider answers how the master key is kept.
 * Implementations never log or return key bytes in errors.
 */
export interface CustodyProvider {
  /** Short provider name used as the key-id prefix. */
  readonly name: string;
  /** Describes the provider key (no secrets). */
  describe(): ProviderKeyDescription;
  /** Wraps a master key so it can be stored in a keyring file. */
  wrapKey(key: Uint8Array, context: WrapContext, signal?: AbortSignal): Promise<Uint8Array>;
  /** Unwraps what wrapKey produced; fails with a ProviderError. */
  unwrapKey(wrapped: Uint8Array, context: WrapContext, signal?: AbortSignal): Promise<Uint8Array>;
  /** Resolves when the provider key is usable now; rejects with a classified ProviderError. */
  checkHealth(signal?: AbortSignal): Promise<void>;
  /** Releases clients and wipes held key material; safe to call twice. */
  close(): Promise<void>;
}

/**
 * A provider that holds the master keys itself (the environment for `local`), so the daemon
 * loads them directly instead of unwrapping a keyring file.
 */
export interface DirectKeyProvider extends CustodyProvider {
  /** Master keys, primary first, then older versions that still decrypt. Caller wipes them. */
  loadMasterKeys(): Uint8Array[];
}

/** Provider operations that reach the key service. */
export type ProviderOperation = "wrapKey" | "unwrapKey" | "checkHealth";

/** Receives one finished provider call: its outcome class and duration. */
export type ProviderCallObserver = (
  provider: string,
  operation: ProviderOperation,
  result: "ok" | ProviderErrorClass,
  seconds: number,
) => void;

/** Receives one failed attempt inside a provider call (retried or not): its error class. */
export type ProviderAttemptObserver = (provider: string, errorClass: ProviderErrorClass) => void;

/** Knobs every provider factory receives; each provider uses what applies to it. */
export interface ProviderOptions {
  /** Deadline of one provider call, retries included. */
  timeoutMs: number;
  /** Attempts per call for throttling and transient failures (1 = no retry). */
  maxAttempts: number;
  /** Service endpoint override (private endpoints, emulators); the SDK default otherwise. */
  endpoint?: string | undefined;
  /** Cloud region, where the key reference does not say it. */
  region?: string | undefined;
  /** Environment the provider reads credentials and settings from. */
  environment: NodeJS.ProcessEnv;
  /**
   * Called once for every failed attempt inside a provider call — including attempts that are
   * retried (throttling, transient failures), whether or not the call then succeeds — with the
   * attempt's error class only, never key material. The registry sets it for each provider (see
   * `observeAttempt`); providers that make a single attempt per call need not call it.
   */
  onAttemptFailed?: ((errorClass: ProviderErrorClass) => void) | undefined;
  /** Receives every provider call (metrics); providers themselves never see it. */
  observe?: ProviderCallObserver | undefined;
  /**
   * Receives every failed attempt of every provider the registry creates (metrics), bound to
   * the provider's name as its `onAttemptFailed`; providers themselves never see it.
   */
  observeAttempt?: ProviderAttemptObserver | undefined;
}
