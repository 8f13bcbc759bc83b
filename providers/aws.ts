import { randomBytes, timingSafeEqual } from "node:crypto";
import {
  DecryptCommand,
  DescribeKeyCommand,
  EncryptCommand,
  KMSClient,
  type KMSClientConfig,
} from "@aws-sdk/client-kms";
import { wipe } from "../src/crypto/wipe.js";
import { KmsEnvelopeError } from "../src/errors.js";
import { type AwsCredentialSource, awsCredentialSource } from "./aws-credentials.js";
import {
  classifyAwsError,
  type KmsOperation,
  type TrackableCommand,
  trackLastAttempt,
  unusableKey,
} from "./aws-errors.js";
import { isAwsArn, parseAwsKeyRef } from "./aws-key-ref.js";
import { checkEndpoint } from "./aws-options.js";
import { integerOption, requireKeyToWrap, requireWrappedKey } from "./preconditions.js";
import {
  type CustodyProvider,
  ProviderError,
  type ProviderErrorClass,
  type ProviderKeyDescription,
  type ProviderLogger,
  type ProviderOptions,
  type WrapContext,
} from "./types.js";

/** Provider name: the key-id prefix and the registry name. */
export const name = "aws";

/** Encryption-context member naming what the wrapped bytes are (always "master-key"). */
export const CONTEXT_PURPOSE = "kms-envelope:purpose";
/** Encryption-context member binding a wrapped key to its key id. */
export const CONTEXT_KEY_ID = "kms-envelope:key-id";

/** How an AwsKmsProvider is built. */
export interface AwsKmsProviderOptions {
  /** Key ARN, key id, `alias/<name>` or alias ARN. Prefer the key ARN: aliases can be retargeted. */
  keyRef: string;
  /** Region; else the region in an ARN keyRef; else the SDK chain (AWS_REGION, profile). */
  region?: string | undefined;
  /** Endpoint override (VPC endpoint, FIPS, emulator); AWS_ENDPOINT_URL_KMS also works. */
  endpoint?: string | undefined;
  /** Explicit credentials (tests); the SDK's default credential chain otherwise. */
  credentials?: KMSClientConfig["credentials"];
  /** Deadline of one provider call, retries and backoff included. Default 5000 ms. */
  timeoutMs?: number | undefined;
  /** Attempts per call on throttling and transient failures (1 = no retry). Default 3. */
  maxAttempts?: number | undefined;
  /** Length of the keys this provider wraps; unwrap refuses anything else. Default 32. */
  keyLength?: number | undefined;
  /** Called with the class of every failed attempt, retried ones included (metrics). */
  onAttemptFailed?: ((errorClass: ProviderErrorClass) => void) | undefined;
  /** Told once when kms:DescribeKey is denied and health checks decrypt instead. */
  logger?: ProviderLogger | undefined;
  /**
   * The environment the SDK's credential chain reads (process.env by default), to name the
   * credential source in errors.
   */
  environment?: NodeJS.ProcessEnv | undefined;
}

const MAX_CIPHERTEXT_BYTES = 6144;
const HEALTH_PROBE_KEY_ID = "aws:health-probe";

/**
 * The `aws` custody provider (SPEC.md §3): the master key is stored wrapped by an AWS KMS
 * symmetric key. wrapKey is one Encrypt, unwrapKey one Decrypt, both with the encryption
 * context `{kms-envelope:purpose: master-key, kms-envelope:key-id: <key id>}`, so a wrapped
 * key only unwraps under the key id it was made for (AWS KMS encryption context = AAD).
 * Calls have one deadline (timeoutMs) and the SDK's standard jittered retry; failures are
 * ProviderErrors classified as aws-encryption-provider does (PEERS.md A.1).
 */
export class AwsKmsProvider implements CustodyProvider {
  readonly name = name;
  readonly #keyRef: string;
  readonly #client: KMSClient;
  readonly #timeoutMs: number;
  readonly #keyLength: number;
  readonly #endpointLabel: string;
  readonly #onAttemptFailed: ((errorClass: ProviderErrorClass) => void) | undefined;
  readonly #logger: ProviderLogger | undefined;
  readonly #credentials: AwsCredentialSource;
  #keyArn: string | undefined;
  // Set once kms:DescribeKey was denied: health then decrypts instead, without asking again
  // (a restart picks up a grant).
  #describeDenied = false;
  // The last key wrapped or unwrapped, which a health check without DescribeKey decrypts again.
  #lastWrapped: { wrapped: Uint8Array; context: WrapContext } | undefined;
  #closed = false;

  constructor(options: AwsKmsProviderOptions) {
    const key = parseAwsKeyRef(options.keyRef, options.region);
    this.#keyRef = key.keyRef;
    this.#keyArn = key.keyArn;
    this.#timeoutMs = integerOption(name, "timeoutMs", options.timeoutMs ?? 5000, 1, 300_000);
    this.#keyLength = integerOption(name, "keyLength", options.keyLength ?? 32, 1, 4096);
    this.#onAttemptFailed = options.onAttemptFailed;
    this.#logger = options.logger;
    this.#credentials = awsCredentialSource(
      options.environment ?? process.env,
      options.credentials !== undefined,
    );
    const maxAttempts = integerOption(name, "maxAttempts", options.maxAttempts ?? 3, 1, 10);
    if (options.endpoint !== undefined) checkEndpoint(options.endpoint);
    const region = options.region ?? key.region;
    this.#endpointLabel =
      options.endpoint ?? `the AWS KMS endpoint of ${region ?? "the configured region"}`;
    suppressNodeVersionNotice();
    this.#client = new KMSClient({
      region,
      endpoint: options.endpoint,
      credentials: options.credentials,
      maxAttempts,
      retryMode: "standard",
      // requestTimeout only warns unless throwOnRequestTimeout is set (@smithy/node-http-handler).
      requestHandler: {
        connectionTimeout: this.#timeoutMs,
        requestTimeout: this.#timeoutMs,
        throwOnRequestTimeout: true,
        httpsAgent: { minVersion: "TLSv1.2" },
      },
    });
  }

  describe(): ProviderKeyDescription {
    return { provider: this.name, keyRef: this.#keyRef };
  }

  async wrapKey(key: Uint8Array, context: WrapContext, signal?: AbortSignal): Promise<Uint8Array> {
    requireKeyToWrap(this.name, key, this.#keyLength);
    const command = new EncryptCommand({
      KeyId: this.#keyRef,
      Plaintext: key,
      EncryptionContext: encryptionContext(context),
    });
    const output = await this.#call("Encrypt", command, signal, (abortSignal) =>
      this.#client.send(command, { abortSignal }),
    );
    this.#learnArn(output.KeyId);
    const blob = output.CiphertextBlob;
    if (!(blob instanceof Uint8Array) || blob.length === 0 || blob.length > MAX_CIPHERTEXT_BYTES) {
      throw new ProviderError(
        "corrupt",
        `AWS KMS Encrypt with ${this.#keyLabel()} returned no usable CiphertextBlob: retry; if it persists, check what answers at ${this.#endpointLabel}`,
      );
    }
    this.#lastWrapped = { wrapped: Uint8Array.from(blob), context: { keyId: context.keyId } };
    return Uint8Array.from(blob);
  }

  async unwrapKey(
    wrapped: Uint8Array,
    context: WrapContext,
    signal?: AbortSignal,
  ): Promise<Uint8Array> {
    requireWrappedKey("AWS KMS", context.keyId, wrapped, MAX_CIPHERTEXT_BYTES);
    const command = new DecryptCommand({
      KeyId: this.#keyRef,
      CiphertextBlob: wrapped,
      EncryptionContext: encryptionContext(context),
    });
    const output = await this.#call("Decrypt", command, signal, (abortSignal) =>
      this.#client.send(command, { abortSignal }),
    );
    this.#learnArn(output.KeyId);
    const plaintext = output.Plaintext;
    try {
      if (!(plaintext instanceof Uint8Array) || plaintext.length !== this.#keyLength) {
        // Only the length is reported: the bytes themselves are secret.
        throw new ProviderError(
          "corrupt",
          `AWS KMS Decrypt with ${this.#keyLabel()} returned ${plaintext?.length ?? 0} bytes for ${context.keyId}, not a ${this.#keyLength}-byte key: the keyring entry or the response is damaged; restore the entry from a backup`,
        );
      }
      this.#lastWrapped = { wrapped: Uint8Array.from(wrapped), context: { keyId: context.keyId } };
      return Uint8Array.from(plaintext);
    } finally {
      wipe(plaintext);
    }
  }

  /**
   * DescribeKey, not an Encrypt probe: it is not a cryptographic operation, so health polls
   * do not spend the account's shared cryptographic request quota (PEERS.md A.8) that real
   * Encrypt/Decrypt traffic needs, and it touches no key material; it still sees disable,
   * scheduled deletion, deletion, a wrong key type and revoked access to the key. A revoked
   * kms:Decrypt alone is caught by the daemon's periodic re-unwrap (SPEC.md §3).
   *
   * kms:DescribeKey is optional: when it is denied (said once), health decrypts the last key
   * wrapped or unwrapped again — or, before any, makes a random key's round trip — which sees
   * the same key states through the operations the identity does hold.
   */
  async checkHealth(signal?: AbortSignal): Promise<void> {
    if (!this.#describeDenied) {
      try {
        await this.#describeKey(signal);
        return;
      } catch (error) {
        if (!isAccessDenied(error)) throw error;
        this.#describeDenied = true;
        this.#logger?.info(
          `aws: kms:DescribeKey is not granted on ${this.#keyLabel()}: health checks decrypt the last wrapped key instead (one Decrypt each; Encrypt and Decrypt of a probe before any). Grant kms:DescribeKey to check the key's state without a cryptographic call`,
        );
      }
    }
    const last = this.#lastWrapped;
    if (last !== undefined) {
      wipe(await this.unwrapKey(last.wrapped, last.context, signal));
      return;
    }
    const sample = randomBytes(this.#keyLength);
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
          `AWS KMS decrypted a health probe with ${this.#keyLabel()} to other bytes: check what answers at ${this.#endpointLabel}`,
        );
      }
    } finally {
      wipe(sample, unwrapped);
    }
  }

  async #describeKey(signal: AbortSignal | undefined): Promise<void> {
    const command = new DescribeKeyCommand({ KeyId: this.#keyRef });
    const output = await this.#call("DescribeKey", command, signal, (abortSignal) =>
      this.#client.send(command, { abortSignal }),
    );
    const metadata = output.KeyMetadata;
    if (metadata === undefined) {
      throw new ProviderError(
        "other",
        `AWS KMS DescribeKey for ${this.#keyRef} returned no KeyMetadata: check what answers at ${this.#endpointLabel}`,
      );
    }
    this.#learnArn(metadata.Arn);
    const problem = unusableKey(metadata, this.#keyLabel());
    if (problem !== undefined) throw new ProviderError("user", problem);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#lastWrapped = undefined;
    this.#client.destroy();
  }

  async #call<T>(
    operation: KmsOperation,
    command: TrackableCommand,
    signal: AbortSignal | undefined,
    send: (abortSignal: AbortSignal) => Promise<T>,
  ): Promise<T> {
    if (this.#closed)
      throw new ProviderError("other", `the aws provider for ${this.#keyRef} is closed`);
    const deadline = AbortSignal.timeout(this.#timeoutMs);
    const abortSignal = signal === undefined ? deadline : AbortSignal.any([deadline, signal]);
    // Each attempt is classified by its own error (one cut short by the deadline or the caller
    // is "other"); the call's final class below also weighs the attempt before the deadline.
    const lastAttempt = trackLastAttempt(command, (error) =>
      this.#onAttemptFailed?.(
        classifyAwsError(error, {
          operation,
          key: this.#keyLabel(),
          keyRef: this.#keyRef,
          timeoutMs: this.#timeoutMs,
          endpoint: this.#endpointLabel,
          credentials: this.#credentials,
          cancelled: false,
          timedOut: false,
        }).errorClass,
      ),
    );
    try {
      return await send(abortSignal);
    } catch (error) {
      const { errorClass, message } = classifyAwsError(error, {
        operation,
        key: this.#keyLabel(),
        keyRef: this.#keyRef,
        timeoutMs: this.#timeoutMs,
        endpoint: this.#endpointLabel,
        credentials: this.#credentials,
        cancelled: signal?.aborted === true,
        timedOut: deadline.aborted,
        lastAttemptError: lastAttempt.error,
      });
      throw new ProviderError(errorClass, message, { cause: error });
    }
  }

  #learnArn(arn: string | undefined): void {
    if (arn !== undefined && isAwsArn(arn)) this.#keyArn = arn;
  }

  // The key ARN once known (it names the resource for IAM advice), else the reference given.
  #keyLabel(): string {
    return this.#keyArn ?? this.#keyRef;
  }
}

/** Registry entry point (providers/registry.ts): one provider for one key reference. */
export function createProvider(keyRef: string, options: ProviderOptions): AwsKmsProvider {
  return new AwsKmsProvider({
    keyRef,
    timeoutMs: options.timeoutMs,
    maxAttempts: options.maxAttempts,
    endpoint: options.endpoint,
    region: options.region,
    onAttemptFailed: options.onAttemptFailed,
    logger: options.logger,
    environment: options.environment,
  });
}

const NODE_VERSION_NOTICE = "AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED";

// On Node 20 every SDK client's first construction emits a nine-line notice that SDK releases
// after January 2027 will need Node 22 (aws-sdk-js-v3#7983), on stderr, where commands print
// one-line errors. The pinned SDK runs on Node 20, and the notice concerns releases this
// package does not use, so it is switched off with the variable the SDK documents for this —
// only when unset: an operator who sets it decides. Process warnings stay on otherwise.
function suppressNodeVersionNotice(): void {
  process.env[NODE_VERSION_NOTICE] ??= "true";
}

// A denial of the call's own permission, not of the credentials (those are other errors).
function isAccessDenied(error: unknown): boolean {
  return (
    error instanceof ProviderError &&
    (error.cause as { name?: unknown } | undefined)?.name === "AccessDeniedException"
  );
}

function encryptionContext(context: WrapContext): Record<string, string> {
  if (context.keyId === "")
    throw new KmsEnvelopeError("INVALID_REQUEST", "a wrap context needs the master key's key id");
  return { [CONTEXT_PURPOSE]: "master-key", [CONTEXT_KEY_ID]: context.keyId };
}
