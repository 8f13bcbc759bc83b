import { randomBytes, timingSafeEqual } from "node:crypto";
import { KeyManagementServiceClient } from "@google-cloud/kms";
import { wipe } from "../src/crypto/wipe.js";
import { ConfigError } from "../src/errors.js";
import { crc32c } from "./crc32c.js";
import {
  clientOptionsForEndpoint,
  type GcpCredentialSource,
  type GcpKmsClientOptions,
  gcpCredentialSource,
} from "./gcp-endpoint.js";
import { type CloudKmsOperation, classifyGcpError, IntegrityFailure } from "./gcp-errors.js";
import { validateGcpKeyRef } from "./gcp-key-ref.js";
import { type AttemptCallOptions, type RetryPolicy, withRetries } from "./gcp-retry.js";
import { requireKeyToWrap } from "./preconditions.js";
import {
  type CustodyProvider,
  ProviderError,
  type ProviderErrorClass,
  type ProviderKeyDescription,
  type ProviderOptions,
  type WrapContext,
} from "./types.js";

/** Provider name, the key-id prefix. */
export const name = "gcp";

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
  /**
   * The environment application default credentials read (process.env by default), to name the
   * credential in errors.
   */
  environment?: NodeJS.ProcessEnv;
}

/** Additional authenticated data binding a wrapped key to its key id (public, not secret). */
function wrapAad(keyId: string): Buffer {
  return Buffer.from(`kms-envelope/master-key/${keyId}`, "utf8");
}

const HEALTH_PROBE_KEY_ID = "gcp:health-probe";

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
  readonly #retry: RetryPolicy;
  readonly #keyBytes: number;
  readonly #onAttemptFailed: ((errorClass: ProviderErrorClass) => void) | undefined;
  readonly #credentials: GcpCredentialSource;
  #probe: { wrapped: Uint8Array; keyId: string } | undefined;
  #closed = false;

  constructor(options: GcpKmsProviderOptions) {
    this.#keyRef = validateGcpKeyRef(options.keyRef);
    this.#retry = {
      timeoutMs: positive(options.timeoutMs ?? 10_000, "timeoutMs"),
      maxAttempts: positive(options.maxAttempts ?? 3, "maxAttempts"),
      retryDelayMs: options.retryDelayMs ?? 100,
    };
    this.#keyBytes = positive(options.keyBytes ?? 32, "keyBytes");
    this.#onAttemptFailed = options.onAttemptFailed;
    const client = options.client ?? {};
    this.#credentials = gcpCredentialSource(
      options.environment ?? process.env,
      client.credentials !== undefined ||
        client.authClient !== undefined ||
        client.sslCreds !== undefined,
    );
    // google-gax logs every request and response body (the plaintext key included) once this
    // variable is set: refuse rather than let a debugging switch write master keys to a log.
    if (process.env.GOOGLE_SDK_NODE_LOGGING) {
      throw new ConfigError(
        "GOOGLE_SDK_NODE_LOGGING",
        "is set, and @google-cloud/kms would then log request bodies, master keys included",
        "unset it to use the gcp provider",
      );
    }
    // No `credentials` here: the client's own chain finds application default credentials.
    this.#client = new KeyManagementServiceClient(options.client ?? {});
  }

  describe(): ProviderKeyDescription {
    return { provider: this.name, keyRef: this.#keyRef };
  }

  async wrapKey(key: Uint8Array, context: WrapContext, signal?: AbortSignal): Promise<Uint8Array> {
    requireKeyToWrap(this.name, key, this.#keyBytes);
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

  // Each failed attempt is classified and counted (onAttemptFailed) before the retry decision.
  async #withRetries<T>(
    operation: CloudKmsOperation,
    signal: AbortSignal | undefined,
    attempt: (callOptions: AttemptCallOptions) => Promise<T>,
    keyId?: string,
  ): Promise<T> {
    if (this.#closed) throw new ProviderError("other", "the gcp provider is closed");
    return withRetries(this.#retry, signal, attempt, (error, attempts) => {
      const failure = classifyGcpError(error, {
        operation,
        keyRef: this.#keyRef,
        attempts,
        timeoutMs: this.#retry.timeoutMs,
        cancelled: signal?.aborted === true,
        keyId,
        credentials: this.#credentials,
      });
      this.#onAttemptFailed?.(failure.error.errorClass);
      return failure;
    });
  }
}

/** Module entry point for the provider registry: one provider for one CryptoKey. */
export function createProvider(keyRef: string, options: ProviderOptions): GcpKmsProvider {
  return new GcpKmsProvider({
    keyRef,
    timeoutMs: options.timeoutMs,
    maxAttempts: options.maxAttempts,
    onAttemptFailed: options.onAttemptFailed,
    environment: options.environment,
    ...(options.endpoint !== undefined && { client: clientOptionsForEndpoint(options.endpoint) }),
  });
}

function positive(value: number, field: string): number {
  if (!Number.isInteger(value) || value <= 0) {
    throw new ConfigError(
      `gcp provider option ${field}`,
      `${value} is not a positive integer`,
      "give a whole number above 0",
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
