import { randomUUID } from "node:crypto";
import type { TokenCredential } from "@azure/identity";
import {
  type CryptographyClient,
  KeyClient,
  type KeyClientOptions,
  type KeyVaultKey,
  type UnwrapKeyOptions,
} from "@azure/keyvault-keys";
import { KmsEnvelopeError } from "../src/errors.js";
import {
  type CustodyProvider,
  ProviderError,
  type ProviderErrorClass,
  type ProviderKeyDescription,
  type WrapContext,
} from "./types.js";

/** Provider name, the key-id prefix (SPEC.md §3). */
export const name = "azure";

/** Key-wrap algorithms: RSA-OAEP-256 for RSA keys, A256KW for Managed HSM `oct-HSM` keys. */
export type AzureWrapAlgorithm = "RSA-OAEP-256" | "A256KW";

/** Options of the Azure Key Vault provider. */
export interface AzureKeyVaultProviderOptions {
  /** Versioned key URL `https://<vault>/keys/<name>/<version>`; the version is required. */
  keyRef: string;
  /** Microsoft Entra credential; DefaultAzureCredential (managed/workload identity, env) if absent. */
  credential?: TokenCredential;
  /** Wrap algorithm; RSA-OAEP-256 by default. */
  algorithm?: AzureWrapAlgorithm;
  /** Deadline of one provider call, retries and token acquisition included; 10 s by default. */
  timeoutMs?: number;
  /** Retries of throttled (429) and transient (408, 5xx, network) failures; 2 by default. */
  maxRetries?: number;
  /** SDK client options (tests: `tlsOptions: { ca }`, `disableChallengeResourceVerification`). */
  clientOptions?: KeyClientOptions;
  /** Called with the class of every failed HTTP attempt, retried ones included (metrics). */
  onAttemptFailed?: (errorClass: ProviderErrorClass) => void;
}

/** A parsed, canonical versioned key URL. */
export interface AzureKeyReference {
  readonly vaultUrl: string;
  readonly keyName: string;
  readonly version: string;
  /** `<vault origin>/keys/<name>/<version>`. */
  readonly keyRef: string;
}

type CallOptions = UnwrapKeyOptions;
type Policy = NonNullable<KeyClientOptions["additionalPolicies"]>[number]["policy"];
type PipelineResponse = Awaited<ReturnType<Policy["sendRequest"]>>;
interface CallState {
  operation: string;
  attempts: number;
  lastStatus: number | undefined;
  kid: string | undefined;
}

const MASTER_KEY_BYTES = 32;
const MAX_WRAPPED_BYTES = 1024;
const KEY_NAME = /^[0-9a-zA-Z-]{1,127}$/;
const KEY_VERSION = /^[0-9a-zA-Z]{1,64}$/;
const CALL_ID_HEADER = "x-ms-client-request-id";
const CREDENTIAL_ERRORS = new Set([
  "CredentialUnavailableError",
  "AuthenticationError",
  "AggregateAuthenticationError",
  "AuthenticationRequiredError",
]);
const KEY_TYPES: Record<AzureWrapAlgorithm, string[]> = {
  "RSA-OAEP-256": ["RSA", "RSA-HSM"],
  A256KW: ["oct", "oct-HSM"],
};

/** Parses a versioned Key Vault / Managed HSM key URL; rejects anything else with what to do. */
export function parseAzureKeyRef(keyRef: string): AzureKeyReference {
  const example = "https://<vault>.vault.azure.net/keys/<name>/<version>";
  const refuse = (problem: string) =>
    new KmsEnvelopeError(
      "INVALID_CONFIG",
      `azure keyRef ${JSON.stringify(keyRef.slice(0, 200))} ${problem}: give a versioned key URL such as ${example}`,
    );
  let url: URL;
  try {
    url = new URL(keyRef);
  } catch {
    throw refuse("is not a URL");
  }
  if (url.protocol !== "https:") throw refuse("must use https");
  if (url.username !== "" || url.password !== "" || url.search !== "" || url.hash !== "") {
    throw refuse("must not carry credentials, a query or a fragment");
  }
  const segments = url.pathname.replace(/\/$/, "").split("/");
  if (segments[1] !== "keys" || segments.length < 3 || segments.length > 4) {
    throw refuse("is not a key URL");
  }
  const [, , keyName = "", version = ""] = segments;
  if (!KEY_NAME.test(keyName)) throw refuse("has an invalid key name");
  if (version === "") {
    throw refuse(
      "has no key version: the provider pins one version, as Azure's KMS plugin does (find it with `az keyvault key show --vault-name <vault> --name <name> --query key.kid`)",
    );
  }
  if (!KEY_VERSION.test(version)) throw refuse("has an invalid key version");
  return {
    vaultUrl: url.origin,
    keyName,
    version,
    keyRef: `${url.origin}/keys/${keyName}/${version}`,
  };
}

/**
 * The `azure` provider (SPEC.md §3, CLOUD-PROTOCOLS.md §B.2): the master key is wrapped with
 * Key Vault wrapKey/unwrapKey under one pinned key version. Every call is bounded by
 * `timeoutMs`; the SDK retry policy retries 429/503 (honouring Retry-After) and other transient
 * failures (exponential backoff with jitter); failures are classified for health and metrics.
 */
export class AzureKeyVaultProvider implements CustodyProvider {
  readonly name = name;
  readonly #key: AzureKeyReference;
  readonly #algorithm: AzureWrapAlgorithm;
  readonly #timeoutMs: number;
  readonly #keys: KeyClient;
  readonly #cryptography: CryptographyClient;
  readonly #calls = new Map<string, CallState>();
  readonly #onAttemptFailed: ((errorClass: ProviderErrorClass) => void) | undefined;
  #closed = false;

  constructor(options: AzureKeyVaultProviderOptions) {
    this.#key = parseAzureKeyRef(options.keyRef);
    this.#algorithm = options.algorithm ?? "RSA-OAEP-256";
    if (KEY_TYPES[this.#algorithm] === undefined) {
      throw new KmsEnvelopeError(
        "INVALID_CONFIG",
        "azure algorithm must be RSA-OAEP-256 or A256KW",
      );
    }
    this.#timeoutMs = options.timeoutMs ?? 10_000;
    this.#onAttemptFailed = options.onAttemptFailed;
    const maxRetries = options.maxRetries ?? options.clientOptions?.retryOptions?.maxRetries ?? 2;
    if (!(Number.isInteger(this.#timeoutMs) && this.#timeoutMs > 0)) {
      throw new KmsEnvelopeError("INVALID_CONFIG", "azure timeoutMs must be a positive integer");
    }
    if (!(Number.isInteger(maxRetries) && maxRetries >= 0 && maxRetries <= 10)) {
      throw new KmsEnvelopeError("INVALID_CONFIG", "azure maxRetries must be 0..10");
    }
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
        { policy: this.#attemptObserver(), position: "perRetry" },
      ],
    });
    this.#cryptography = this.#keys.getCryptographyClient(this.#key.keyName, {
      keyVersion: this.#key.version,
    });
  }

  describe(): ProviderKeyDescription {
    return { provider: this.name, keyRef: this.#key.keyRef };
  }

  /** Checks the key version is usable (fresh GET), then wraps: one wrapkey call. */
  async wrapKey(key: Uint8Array, _context: WrapContext, signal?: AbortSignal): Promise<Uint8Array> {
    if (key.length !== MASTER_KEY_BYTES) {
      throw new KmsEnvelopeError(
        "INVALID_MASTER_KEY",
        `azure wrapKey takes a ${MASTER_KEY_BYTES}-byte master key, got ${key.length} bytes`,
      );
    }
    return this.#call("wrapKey", signal, async (options, state) => {
      // The service still wraps under a disabled or expired version (public-key operation), which
      // would store a master key nobody can unwrap: refuse up front.
      await this.#verifyKey(options);
      const result = await this.#cryptography.wrapKey(this.#algorithm, key, options);
      this.#checkKid("wrapKey", state.kid, result.keyID);
      return Uint8Array.from(result.result);
    });
  }

  /** One unwrapkey call (plus the SDK's one-time GET of the key on first use). */
  async unwrapKey(
    wrapped: Uint8Array,
    _context: WrapContext,
    signal?: AbortSignal,
  ): Promise<Uint8Array> {
    if (wrapped.length === 0 || wrapped.length > MAX_WRAPPED_BYTES) {
      throw new ProviderError(
        "corrupt",
        `azure wrapped key has ${wrapped.length} bytes: it is damaged`,
      );
    }
    return this.#call("unwrapKey", signal, async (options, state) => {
      const result = await this.#cryptography.unwrapKey(this.#algorithm, wrapped, options);
      try {
        this.#checkKid("unwrapKey", state.kid, result.keyID);
        if (result.result.length !== MASTER_KEY_BYTES) {
          throw new ProviderError(
            "corrupt",
            `Key Vault unwrapped ${result.result.length} bytes with ${this.#key.keyRef}, not a ${MASTER_KEY_BYTES}-byte master key: the wrapped key is damaged or is not a kms-envelope master key`,
          );
        }
        return Buffer.from(result.result);
      } finally {
        result.result.fill(0);
      }
    });
  }

  /**
   * One GET of the pinned version: proves network, TLS, token and authorization, and that the
   * key exists, is enabled, within nbf/exp, of the right type and allows wrapKey/unwrapKey —
   * without sending key material or spending a cryptographic operation. The daemon's health
   * loop re-unwraps the keyring, which proves the unwrapKey permission itself (SPEC.md §3).
   */
  async checkHealth(signal?: AbortSignal): Promise<void> {
    await this.#call("checkHealth", signal, (options) => this.#verifyKey(options));
  }

  async close(): Promise<void> {
    // Nothing to release: the SDK keeps no key material, and its idle keep-alive sockets are
    // unref'd by Node's HTTP agent, so they never hold the process open.
    this.#closed = true;
    this.#calls.clear();
  }

  async #verifyKey(options: CallOptions): Promise<KeyVaultKey> {
    const key = await this.#keys.getKey(this.#key.keyName, {
      ...options,
      version: this.#key.version,
    });
    this.#checkKid("get", key.id);
    const keyRef = this.#key.keyRef;
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
    if (!KEY_TYPES[this.#algorithm].includes(key.keyType ?? "")) {
      throw user(
        `key ${keyRef} is of type ${key.keyType}, which ${this.#algorithm} cannot use: use ${KEY_TYPES[this.#algorithm].join(" or ")} keys for ${this.#algorithm}`,
      );
    }
    const missing = ["wrapKey", "unwrapKey"].filter(
      (op) => !(key.keyOperations ?? []).includes(op),
    );
    if (missing.length > 0) {
      throw user(
        `key ${keyRef} does not permit ${missing.join(" and ")}: allow them (\`${attributes} --ops wrapKey unwrapKey\`)`,
      );
    }
    return key;
  }

  #checkKid(operation: string, ...reported: (string | undefined)[]): void {
    for (const kid of reported) {
      if (kid === undefined || sameKey(kid, this.#key)) continue;
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
    const callId = randomUUID();
    const state: CallState = { operation, attempts: 0, lastStatus: undefined, kid: undefined };
    const timeout = new AbortController();
    const timer = setTimeout(() => timeout.abort(), this.#timeoutMs);
    timer.unref();
    this.#calls.set(callId, state);
    const options: CallOptions = {
      abortSignal:
        signal === undefined ? timeout.signal : AbortSignal.any([signal, timeout.signal]),
      requestOptions: { headers: { [CALL_ID_HEADER]: callId } },
      onResponse: (response) => {
        const body = response.parsedBody as { kid?: unknown } | undefined;
        if (response.request.method === "POST" && typeof body?.kid === "string")
          state.kid = body.kid;
      },
    };
    try {
      return await run(options, state);
    } catch (error) {
      throw this.#classify(error, operation, state, {
        timedOut: timeout.signal.aborted,
        cancelled: signal?.aborted === true,
      });
    } finally {
      clearTimeout(timer);
      this.#calls.delete(callId);
    }
  }

  // Sees every HTTP attempt (after the retry policy), so a timeout spent waiting out 429s is
  // reported as throttling, messages can say how many attempts were made, and every failed
  // attempt, retried or not, reaches onAttemptFailed.
  #attemptObserver(): Policy {
    return {
      name: "kmsEnvelopeAttemptObserver",
      sendRequest: async (request, next) => {
        const state = this.#calls.get(request.headers.get(CALL_ID_HEADER) ?? "");
        if (state !== undefined) state.attempts += 1;
        let response: PipelineResponse;
        try {
          response = await next(request);
        } catch (error) {
          if (state !== undefined) this.#attemptFailed(error, state);
          throw error;
        }
        if (state !== undefined) {
          state.lastStatus = response.status;
          // The bearer challenge's first, unauthenticated request is answered 401 by design.
          if (response.status >= 300 && request.headers.has("authorization"))
            this.#attemptFailed(responseError(response), state);
        }
        return response;
      },
    };
  }

  // One attempt is classified by its own failure, as the call would be: 429 throttled, 5xx and
  // network other, 401/403/404 user, 400 on unwrap corrupt; one cut short by the deadline or
  // the caller is other.
  #attemptFailed(error: unknown, state: CallState): void {
    this.#onAttemptFailed?.(
      this.#classify(error, state.operation, state, { timedOut: false, cancelled: false })
        .errorClass,
    );
  }

  #classify(
    error: unknown,
    operation: string,
    state: CallState,
    abort: { timedOut: boolean; cancelled: boolean },
  ): ProviderError {
    if (error instanceof ProviderError) return error;
    const keyRef = this.#key.keyRef;
    const where = `${operation} with ${keyRef}`;
    const attempts = `${state.attempts} attempt${state.attempts === 1 ? "" : "s"}`;
    const fail = (errorClass: ProviderError["errorClass"], message: string) =>
      new ProviderError(errorClass, message, { cause: error });
    if (abort.timedOut) {
      return state.lastStatus === 429
        ? fail(
            "throttled",
            `Key Vault kept throttling ${where} for ${this.#timeoutMs} ms (${attempts}): retry later, and look for other clients sharing the vault's limits`,
          )
        : fail(
            "other",
            `Key Vault did not complete ${where} within ${this.#timeoutMs} ms (${attempts}): check network access to ${this.#key.vaultUrl} (firewall, private endpoint, proxy) and the service's health`,
          );
    }
    if (abort.cancelled) return fail("other", `${where} was cancelled by the caller`);
    const { name: errorName, message } = describeError(error);
    if (CREDENTIAL_ERRORS.has(errorName)) {
      return fail(
        "user",
        `no Microsoft Entra token for Key Vault (${errorName}: ${message}): give the daemon a managed or workload identity, or set AZURE_TENANT_ID, AZURE_CLIENT_ID and a secret or certificate`,
      );
    }
    if (errorName === "RestError") {
      const { statusCode: status, code, details } = error as RestErrorShape;
      const said = ` (Key Vault: ${status ?? "no response"} ${code ?? ""}: ${message})`;
      const access = `grant the daemon's identity the Key Vault Crypto User role (or the get, wrapKey and unwrapKey key permissions of an access policy) on ${keyRef}, and allow its network in the vault firewall`;
      if (status === 401)
        return fail(
          "user",
          `Key Vault rejected the token for ${where}: check that the identity is in the vault's tenant${said}`,
        );
      if (
        status === 403 &&
        (details?.error?.innerError?.code === "KeyDisabled" || /disabled/i.test(message))
      ) {
        return fail(
          "user",
          `key version ${keyRef} is disabled: enable it (\`az keyvault key set-attributes --id ${keyRef} --enabled true\`) or rotate to an enabled version${said}`,
        );
      }
      if (status === 403) return fail("user", `access denied for ${where}: ${access}${said}`);
      if (status === 404)
        return fail(
          "user",
          `Key Vault has no key ${keyRef}: it was deleted (recover it with \`az keyvault key recover\`) or keyRef names the wrong vault, key or version${said}`,
        );
      if (status === 429)
        return fail(
          "throttled",
          `Key Vault throttled ${where} (${attempts}): retry later, and look for other clients sharing the vault's limits${said}`,
        );
      if (status === 400 && operation === "unwrapKey" && !/algorithm/i.test(message)) {
        return fail(
          "corrupt",
          `Key Vault could not unwrap the wrapped key with ${keyRef}: it is damaged, or was wrapped under another key or key version${said}`,
        );
      }
      if (status === 400)
        return fail(
          "user",
          `Key Vault refused ${where}: check that ${this.#algorithm} suits the key${said}`,
        );
      if (status === undefined)
        return fail(
          "other",
          `could not reach Key Vault at ${this.#key.vaultUrl} for ${operation} (${attempts}): ${message}: check DNS, network access, proxy and TLS trust`,
        );
      return fail(
        "other",
        `Key Vault failed ${where} (${attempts}): a service-side or transient failure, retry later${said}`,
      );
    }
    // Client-side refusals of the SDK (CryptographyClient.ensureValid, challenge verification).
    if (/expired at|can't be used before|is not supported on key/.test(message)) {
      return fail(
        "user",
        `the Key Vault SDK refused ${where}: ${message}: check the key version's expiry, not-before and permitted operations`,
      );
    }
    if (/challenge resource/.test(message)) {
      return fail(
        "user",
        `${this.#key.vaultUrl} answered with an authentication challenge for another resource: keyRef must name a Key Vault or Managed HSM URL (${message})`,
      );
    }
    return fail("other", `${where} failed: ${errorName}: ${message}`);
  }
}

/** Module entry point for the provider registry (`providers/registry.ts`). */
export function createProvider(
  keyRef: string,
  options: {
    timeoutMs: number;
    maxAttempts: number;
    onAttemptFailed?: ((errorClass: ProviderErrorClass) => void) | undefined;
  },
): AzureKeyVaultProvider {
  return new AzureKeyVaultProvider({
    keyRef,
    timeoutMs: options.timeoutMs,
    maxRetries: Math.max(0, options.maxAttempts - 1),
    onAttemptFailed: options.onAttemptFailed,
  });
}

interface RestErrorShape {
  statusCode?: number;
  code?: string;
  details?: { error?: { innerError?: { code?: string } } };
}

// The RestError the SDK will make of a failed response (status, Key Vault's error code and
// message), built early so one attempt is classified before the retry policy sees it.
function responseError(response: PipelineResponse): Error {
  let details: { error?: { code?: unknown; message?: unknown } } | undefined;
  try {
    details = JSON.parse(response.bodyAsText ?? "");
  } catch {
    details = undefined;
  }
  const { code, message } = details?.error ?? {};
  return Object.assign(
    new Error(typeof message === "string" ? message : `HTTP ${response.status}`),
    {
      name: "RestError",
      statusCode: response.status,
      code: typeof code === "string" ? code : undefined,
      details,
    },
  );
}

function user(message: string): ProviderError {
  return new ProviderError("user", message);
}

// Key Vault host names are case-insensitive and so are key names; versions are hex.
function sameKey(kid: string, key: AzureKeyReference): boolean {
  try {
    return parseAzureKeyRef(kid).keyRef.toLowerCase() === key.keyRef.toLowerCase();
  } catch {
    return false;
  }
}

// One line, bounded: service and SDK messages name keys and codes, never tokens or key bytes.
function describeError(error: unknown): { name: string; message: string } {
  const name = error instanceof Error ? error.name : typeof error;
  const raw = error instanceof Error ? error.message : String(error);
  const line = raw.replace(/\s+/g, " ").trim();
  return { name, message: line.length > 240 ? `${line.slice(0, 240)}…` : line };
}

// DefaultAzureCredential pulls in MSAL: load it on the first token request, not at import, so
// a daemon that never uses Azure (and tests with their own credential) does not pay for it.
function defaultCredential(): TokenCredential {
  let credential: Promise<TokenCredential> | undefined;
  return {
    async getToken(scopes, options) {
      credential ??= import("@azure/identity").then(
        (identity) => new identity.DefaultAzureCredential(),
      );
      return (await credential).getToken(scopes, options);
    },
  };
}
