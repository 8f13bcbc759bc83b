import { randomBytes, timingSafeEqual } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { KeyManagementServiceClient } from "@google-cloud/kms";
import { status } from "@grpc/grpc-js";
import { grpc } from "google-gax";
import { wipe } from "../src/crypto/wipe.js";
import { KmsEnvelopeError } from "../src/errors.js";
import { crc32c } from "./crc32c.js";
import type { ProviderOptions } from "./registry.js";
import {
  type CustodyProvider,
  ProviderError,
  type ProviderErrorClass,
  type ProviderKeyDescription,
  type WrapContext,
} from "./types.js";

/** Provider name, the key-id prefix. */
export const name = "gcp";

/** Options of the `@google-cloud/kms` client (endpoint, port, credentials, sslCreds…). */
export type GcpKmsClientOptions = NonNullable<
  ConstructorParameters<typeof KeyManagementServiceClient>[0]
>;

/** Options of a GcpKmsProvider. */
export interface GcpKmsProviderOptions {
  /** The CryptoKey: `projects/P/locations/L/keyRings/R/cryptoKeys/K` (no version). */
  keyRef: string;
  /** Client options; default: the public endpoint with application default credentials. */
  client?: GcpKmsClientOptions;
  /** Deadline of one provider operation, every attempt and back-off included. Default 10 s. */
  timeoutMs?: number;
  /** Attempts per operation for integrity failures, throttling and outages. Default 3. */
  maxAttempts?: number;
  /** First back-off step; later ones double, with full jitter. Default 100 ms. */
  retryDelayMs?: number;
  /** Length every unwrapped key must have. Default 32 (the master-key size, SPEC.md §2). */
  keyBytes?: number;
  /** Called with the class of every failed attempt, retried ones included (metrics). */
  onAttemptFailed?: (errorClass: ProviderErrorClass) => void;
}

/** Additional authenticated data binding a wrapped key to its key id (public, not secret). */
export function wrapAad(keyId: string): Buffer {
  return Buffer.from(`kms-envelope/master-key/${keyId}`, "utf8");
}

const KEY_REF =
  /^projects\/[^/\s]+\/locations\/[^/\s]+\/keyRings\/[\w-]{1,63}\/cryptoKeys\/[\w-]{1,63}$/;
const KEY_REF_SHAPE = "projects/PROJECT/locations/LOCATION/keyRings/RING/cryptoKeys/KEY";
// gcloud recognises a server-side checksum failure by this wording (INVALID_ARGUMENT); it is
// worth a retry, unlike other INVALID_ARGUMENTs (data-integrity guidelines).
const SERVER_CHECKSUM_FAILURE = /The checksum in field \S+ did not match the data in field/;
const HEALTH_PROBE_KEY_ID = "gcp:health-probe";
const MAX_BACKOFF_MS = 2_000;

type Operation = "Encrypt" | "Decrypt";

/** A response that failed the client side of the CRC32C contract; worth a retry. */
class IntegrityFailure extends Error {}

/**
 * The `gcp` provider (SPEC.md §3): wraps master keys with Cloud KMS Encrypt/Decrypt through
 * the official gRPC client, following Google's end-to-end data-integrity guidelines —
 * CRC32C of every input sent and verified by the server, CRC32C of every output checked here,
 * the key version named in the answer checked, limited retries on a mismatch. The wrapped
 * key is bound to its key id by the AAD, so wrapped keys cannot be swapped between versions.
 */
export class GcpKmsProvider implements CustodyProvider {
  readonly name = name;
  readonly #keyRef: string;
  readonly #client: KeyManagementServiceClient;
  readonly #timeoutMs: number;
  readonly #maxAttempts: number;
  readonly #retryDelayMs: number;
  readonly #keyBytes: number;
  readonly #onAttemptFailed: ((errorClass: ProviderErrorClass) => void) | undefined;
  #probe: { wrapped: Uint8Array; keyId: string } | undefined;
  #closed = false;

  constructor(options: GcpKmsProviderOptions) {
    this.#keyRef = validateKeyRef(options.keyRef);
    this.#timeoutMs = positive(options.timeoutMs ?? 10_000, "timeoutMs");
    this.#maxAttempts = positive(options.maxAttempts ?? 3, "maxAttempts");
    this.#retryDelayMs = options.retryDelayMs ?? 100;
    this.#keyBytes = positive(options.keyBytes ?? 32, "keyBytes");
    this.#onAttemptFailed = options.onAttemptFailed;
    // google-gax logs every request and response body (the plaintext key included) once this
    // variable is set: refuse rather than let a debugging switch write master keys to a log.
    if (process.env.GOOGLE_SDK_NODE_LOGGING) {
      throw new KmsEnvelopeError(
        "INVALID_CONFIG",
        "GOOGLE_SDK_NODE_LOGGING is set: @google-cloud/kms would log request bodies, master keys included; unset it to use the gcp provider",
      );
    }
    // No `credentials` here: the client's own chain finds application default credentials.
    this.#client = new KeyManagementServiceClient(options.client ?? {});
  }

  describe(): ProviderKeyDescription {
    return { provider: this.name, keyRef: this.#keyRef };
  }

  async wrapKey(key: Uint8Array, context: WrapContext, signal?: AbortSignal): Promise<Uint8Array> {
    if (key.length !== this.#keyBytes) {
      throw new KmsEnvelopeError(
        "INVALID_MASTER_KEY",
        `a key to wrap must be ${this.#keyBytes} bytes`,
      );
    }
    const aad = wrapAad(context.keyId);
    const wrapped = await this.#withRetries("Encrypt", signal, async (callOptions) => {
      const [response] = await this.#client.encrypt(
        {
          name: this.#keyRef,
          plaintext: key,
          additionalAuthenticatedData: aad,
          plaintextCrc32c: { value: crc32c(key) },
          additionalAuthenticatedDataCrc32c: { value: crc32c(aad) },
        },
        callOptions,
      );
      if (response.verifiedPlaintextCrc32c !== true) {
        throw new IntegrityFailure("Cloud KMS did not confirm the plaintext checksum");
      }
      if (response.verifiedAdditionalAuthenticatedDataCrc32c !== true) {
        throw new IntegrityFailure("Cloud KMS did not confirm the AAD checksum");
      }
      if (!response.name?.startsWith(`${this.#keyRef}/cryptoKeyVersions/`)) {
        throw new IntegrityFailure("Cloud KMS answered for another key");
      }
      const ciphertext = asBytes(response.ciphertext);
      if (ciphertext.length === 0 || checksum(response.ciphertextCrc32c) !== crc32c(ciphertext)) {
        throw new IntegrityFailure("the ciphertext failed its CRC32C check");
      }
      return Uint8Array.from(ciphertext);
    });
    this.#probe = { wrapped, keyId: context.keyId };
    return Uint8Array.from(wrapped);
  }

  async unwrapKey(
    wrapped: Uint8Array,
    context: WrapContext,
    signal?: AbortSignal,
  ): Promise<Uint8Array> {
    const aad = wrapAad(context.keyId);
    const key = await this.#withRetries(
      "Decrypt",
      signal,
      async (callOptions) => {
        const [response] = await this.#client.decrypt(
          {
            name: this.#keyRef,
            ciphertext: wrapped,
            additionalAuthenticatedData: aad,
            ciphertextCrc32c: { value: crc32c(wrapped) },
            additionalAuthenticatedDataCrc32c: { value: crc32c(aad) },
          },
          callOptions,
        );
        const received = asBytes(response.plaintext);
        try {
          if (checksum(response.plaintextCrc32c) !== crc32c(received)) {
            throw new IntegrityFailure("the unwrapped key failed its CRC32C check");
          }
          const copy = Buffer.alloc(received.length);
          received.copy(copy);
          return copy;
        } finally {
          wipe(received);
        }
      },
      context.keyId,
    );
    if (key.length !== this.#keyBytes) {
      wipe(key);
      throw new ProviderError(
        "corrupt",
        `the wrapped key for ${context.keyId} unwrapped to ${key.length} bytes, not ${this.#keyBytes}: the keyring entry is not a master key`,
      );
    }
    this.#probe = { wrapped: Uint8Array.from(wrapped), keyId: context.keyId };
    return key;
  }

  /**
   * Proves the key that protects the master key still decrypts: re-unwraps the wrapped key this
   * provider last wrapped or unwrapped (one Decrypt), or before any, round-trips a random probe.
   * Decrypt, not GetCryptoKey: disabling the version *or* revoking useToDecrypt must both fail
   * the check (SPEC.md §3), and GetCryptoKey needs cloudkms.cryptoKeys.get, which the
   * least-privilege role roles/cloudkms.cryptoKeyEncrypterDecrypter does not grant.
   */
  async checkHealth(signal?: AbortSignal): Promise<void> {
    const probe = this.#probe;
    if (probe !== undefined) {
      wipe(await this.unwrapKey(probe.wrapped, { keyId: probe.keyId }, signal));
      return;
    }
    const sample = randomBytes(this.#keyBytes);
    let unwrapped: Uint8Array | undefined;
    try {
      const context = { keyId: HEALTH_PROBE_KEY_ID };
      unwrapped = await this.unwrapKey(
        await this.wrapKey(sample, context, signal),
        context,
        signal,
      );
      if (!timingSafeEqual(unwrapped, sample)) {
        throw new ProviderError(
          "corrupt",
          `Cloud KMS round trip through ${this.#keyRef} returned other bytes`,
        );
      }
    } finally {
      wipe(sample, unwrapped);
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#probe = undefined;
    await this.#client.close();
  }

  /**
   * Runs one operation with bounded, jittered retries under one deadline. gax's own retry is
   * switched off (`retry: null`): its default for Encrypt/Decrypt keeps retrying UNAVAILABLE for
   * up to 600 s (CLOUD-PROTOCOLS.md B.3), far beyond a health-check deadline.
   */
  async #withRetries<T>(
    operation: Operation,
    signal: AbortSignal | undefined,
    attempt: (callOptions: { timeout: number; retry: null }) => Promise<T>,
    keyId?: string,
  ): Promise<T> {
    if (this.#closed) throw new ProviderError("other", "the gcp provider is closed");
    const deadline = Date.now() + this.#timeoutMs;
    for (let attempts = 1; ; attempts += 1) {
      const remaining = deadline - Date.now();
      try {
        if (signal?.aborted) throw signal.reason;
        if (remaining <= 0)
          throw Object.assign(new Error("deadline"), { code: status.DEADLINE_EXCEEDED });
        return await abortable(attempt({ timeout: remaining, retry: null }), signal);
      } catch (error) {
        const failure = this.#classify(error, operation, attempts, signal, keyId);
        this.#onAttemptFailed?.(failure.error.errorClass);
        const backoff =
          Math.random() * Math.min(MAX_BACKOFF_MS, this.#retryDelayMs * 2 ** (attempts - 1));
        if (!failure.retry || attempts >= this.#maxAttempts || Date.now() + backoff >= deadline) {
          throw failure.error;
        }
        await sleep(backoff, undefined, { signal }).catch(() => {
          throw failure.error;
        });
      }
    }
  }

  #classify(
    error: unknown,
    operation: Operation,
    attempts: number,
    signal: AbortSignal | undefined,
    keyId: string | undefined,
  ): { error: ProviderError; retry: boolean } {
    const fail = (errorClass: ProviderErrorClass, message: string, retry = false) => ({
      error: new ProviderError(errorClass, message, { cause: error }),
      retry,
    });
    const key = this.#keyRef;
    const tries = `after ${attempts} attempt${attempts === 1 ? "" : "s"}`;
    if (signal?.aborted)
      return fail("other", `Cloud KMS ${operation} on ${key} was cancelled (caller deadline)`);
    if (error instanceof IntegrityFailure) {
      return fail(
        "corrupt",
        `Cloud KMS ${operation} response failed its integrity check ${tries} (${error.message}): check the network path to Cloud KMS (proxies, TLS interception)`,
        true,
      );
    }
    const code = (error as { code?: unknown } | null)?.code;
    // The service's own words (a version name and state, a permission name) help the
    // operator; they never carry key material.
    const raw = statusDetails(error);
    const details = raw === "" ? "" : ` (Cloud KMS: ${raw.slice(0, 300)})`;
    // grpc-js reports a failing call-credentials plugin (google-auth: no ADC, unreadable key
    // file, refused token refresh) as UNKNOWN with this prefix, before any request is sent.
    if (raw.startsWith("Getting metadata from plugin failed")) {
      return fail(
        "user",
        `no usable Google credentials for Cloud KMS: set GOOGLE_APPLICATION_CREDENTIALS, or run with workload identity or on a GCE/GKE metadata server (${raw.slice(0, 300)})`,
      );
    }
    switch (code) {
      case status.PERMISSION_DENIED:
        return fail(
          "user",
          `Cloud KMS denied ${operation} on ${key}: grant roles/cloudkms.cryptoKeyEncrypterDecrypter on ${key} to the daemon's service account${details}`,
        );
      case status.UNAUTHENTICATED:
        return fail(
          "user",
          `Cloud KMS rejected the credentials for ${operation}: check application default credentials (GOOGLE_APPLICATION_CREDENTIALS, workload identity, metadata server)${details}`,
        );
      case status.NOT_FOUND:
        return fail(
          "user",
          `Cloud KMS has no CryptoKey ${key}: check the key reference (${KEY_REF_SHAPE})${details}`,
        );
      case status.FAILED_PRECONDITION:
        return fail(
          "user",
          `Cloud KMS refused ${operation} on ${key} because the key version is not enabled: enable it (gcloud kms keys versions enable), or restore it if destruction is only scheduled${details}`,
        );
      case status.RESOURCE_EXHAUSTED:
        return fail(
          "throttled",
          `Cloud KMS is throttling ${operation} on ${key} ${tries}: retry later or raise the Cloud KMS cryptographic-requests quota`,
          true,
        );
      case status.INVALID_ARGUMENT:
        if (SERVER_CHECKSUM_FAILURE.test(raw)) {
          return fail(
            "corrupt",
            `the ${operation} request was damaged before reaching Cloud KMS (server-side CRC32C mismatch) ${tries}: check the network path to Cloud KMS`,
            true,
          );
        }
        if (operation === "Decrypt") {
          return fail(
            "corrupt",
            `the wrapped key${keyId === undefined ? "" : ` for ${keyId}`} does not decrypt under ${key}: it is damaged, was wrapped for another key id, or under another CryptoKey`,
          );
        }
        return fail(
          "user",
          `Cloud KMS rejected Encrypt with ${key}: check that it is a symmetric ENCRYPT_DECRYPT key${details}`,
        );
      case status.DEADLINE_EXCEEDED:
        return fail(
          "other",
          `Cloud KMS did not answer ${operation} within ${this.#timeoutMs} ms: check network access to Cloud KMS or raise the provider timeout`,
        );
      case status.UNAVAILABLE:
        return fail(
          "other",
          `Cloud KMS is unavailable for ${operation} ${tries}: check network access to cloudkms.googleapis.com${details}`,
          true,
        );
    }
    const name =
      typeof code === "number" ? (status[code] ?? `code ${code}`) : "an unexpected error";
    return fail("other", `Cloud KMS ${operation} on ${key} failed with ${name}${details}`);
  }
}

/** Module entry point for the provider registry: one provider for one CryptoKey. */
export function createProvider(keyRef: string, options: ProviderOptions): GcpKmsProvider {
  return new GcpKmsProvider({
    keyRef,
    timeoutMs: options.timeoutMs,
    maxAttempts: options.maxAttempts,
    onAttemptFailed: options.onAttemptFailed,
    ...(options.endpoint !== undefined && { client: clientOptionsForEndpoint(options.endpoint) }),
  });
}

/**
 * Client options for an endpoint override: `host[:port]` or `https://host[:port]` keep TLS
 * (private endpoints); `http://` is accepted for loopback emulators only.
 */
export function clientOptionsForEndpoint(endpoint: string): GcpKmsClientOptions {
  const url = new URL(endpoint.includes("://") ? endpoint : `https://${endpoint}`);
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  const port = url.port === "" ? 443 : Number(url.port);
  if (url.protocol === "https:") return { apiEndpoint: host, port };
  if (url.protocol === "http:" && ["127.0.0.1", "::1", "localhost"].includes(host)) {
    // google-gax's grpc is the @grpc/grpc-js instance the client checks credentials against;
    // an explicit universe domain keeps google-gax from running the ADC lookup for one.
    return {
      apiEndpoint: host,
      port,
      sslCreds: grpc.credentials.createInsecure(),
      universeDomain: "googleapis.com",
    };
  }
  throw new KmsEnvelopeError(
    "INVALID_CONFIG",
    `endpoint ${JSON.stringify(endpoint)} is not usable: give host[:port] or https://host[:port] (plain http only for a loopback emulator)`,
  );
}

function validateKeyRef(keyRef: string): string {
  if (KEY_REF.test(keyRef)) return keyRef;
  const hint = /\/cryptoKeyVersions\//.test(keyRef)
    ? "name the CryptoKey, not a version (Decrypt picks the version from the ciphertext)"
    : `expected ${KEY_REF_SHAPE}`;
  throw new KmsEnvelopeError(
    "INVALID_CONFIG",
    `gcp key reference ${JSON.stringify(keyRef.slice(0, 200))} is invalid: ${hint}`,
  );
}

function positive(value: number, field: string): number {
  if (!Number.isInteger(value) || value <= 0) {
    throw new KmsEnvelopeError(
      "INVALID_CONFIG",
      `gcp provider option ${field} must be a positive integer, got ${value}`,
    );
  }
  return value;
}

// Int64Value arrives as a string (gax decodes longs as strings), a number or a Long.
function checksum(wrapper: { value?: unknown } | null | undefined): number | undefined {
  const value = wrapper?.value;
  if (value === undefined || value === null) return undefined;
  const parsed = Number(String(value));
  return Number.isFinite(parsed) ? parsed : undefined;
}

function asBytes(value: Uint8Array | string | null | undefined): Buffer {
  if (value === null || value === undefined) return Buffer.alloc(0);
  if (typeof value === "string") return Buffer.from(value, "base64");
  return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}

function statusDetails(error: unknown): string {
  const details = (error as { details?: unknown } | null)?.details;
  return typeof details === "string" ? details : "";
}

function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return promise;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    if (signal.aborted) onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}
