import {
  DecryptCommand,
  DescribeKeyCommand,
  EncryptCommand,
  type KeyMetadata,
  KMSClient,
  type KMSClientConfig,
} from "@aws-sdk/client-kms";
import { wipe } from "../src/crypto/wipe.js";
import { KmsEnvelopeError } from "../src/errors.js";
import {
  type CustodyProvider,
  ProviderError,
  type ProviderErrorClass,
  type ProviderKeyDescription,
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
}

const KEY_ID =
  /^(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32})$/;
const ALIAS = /^alias\/[a-zA-Z0-9/_-]{1,250}$/;
const ARN = /^arn:(aws[a-z-]*):kms:([a-z0-9-]+):(\d{12}):(key|alias)\/(.+)$/;
const MAX_CIPHERTEXT_BYTES = 6144;

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
  #keyArn: string | undefined;
  #closed = false;

  constructor(options: AwsKmsProviderOptions) {
    const keyRef = options.keyRef.trim();
    const arn = ARN.exec(keyRef);
    if (!(KEY_ID.test(keyRef) || ALIAS.test(keyRef) || arn !== null)) {
      throw invalidConfig(
        `AWS KMS key reference ${JSON.stringify(keyRef)} is not a key id, key ARN, alias/<name> or alias ARN: give the key ARN (arn:aws:kms:<region>:<account>:key/<id>)`,
      );
    }
    const arnRegion = arn?.[2];
    if (options.region !== undefined && arnRegion !== undefined && options.region !== arnRegion) {
      throw invalidConfig(
        `region ${options.region} does not match the region of key ${keyRef} (${arnRegion}): KMS keys are regional; drop --region or use a key in ${options.region}`,
      );
    }
    this.#keyRef = keyRef;
    this.#keyArn = arn?.[4] === "key" ? keyRef : undefined;
    this.#timeoutMs = integerOption("timeoutMs", options.timeoutMs ?? 5000, 1, 300_000);
    this.#keyLength = integerOption("keyLength", options.keyLength ?? 32, 1, 4096);
    this.#onAttemptFailed = options.onAttemptFailed;
    const maxAttempts = integerOption("maxAttempts", options.maxAttempts ?? 3, 1, 10);
    if (options.endpoint !== undefined) checkEndpoint(options.endpoint);
    const region = options.region ?? arnRegion;
    this.#endpointLabel =
      options.endpoint ?? `the AWS KMS endpoint of ${region ?? "the configured region"}`;
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
    if (key.length !== this.#keyLength) {
      throw new KmsEnvelopeError(
        "INVALID_MASTER_KEY",
        `the aws provider wraps ${this.#keyLength}-byte keys, not ${key.length}-byte ones`,
      );
    }
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
    return Uint8Array.from(blob);
  }

  async unwrapKey(
    wrapped: Uint8Array,
    context: WrapContext,
    signal?: AbortSignal,
  ): Promise<Uint8Array> {
    if (wrapped.length === 0 || wrapped.length > MAX_CIPHERTEXT_BYTES) {
      throw new ProviderError(
        "corrupt",
        `the wrapped key for ${context.keyId} is ${wrapped.length} bytes, not an AWS KMS ciphertext: restore the keyring entry from a backup`,
      );
    }
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
   */
  async checkHealth(signal?: AbortSignal): Promise<void> {
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
        cancelled: signal?.aborted === true,
        timedOut: deadline.aborted,
        lastAttemptError: lastAttempt.error,
      });
      throw new ProviderError(errorClass, message, { cause: error });
    }
  }

  #learnArn(arn: string | undefined): void {
    if (arn !== undefined && ARN.test(arn)) this.#keyArn = arn;
  }

  // The key ARN once known (it names the resource for IAM advice), else the reference given.
  #keyLabel(): string {
    return this.#keyArn ?? this.#keyRef;
  }
}

/** Registry entry point (providers/registry.ts): one provider for one key reference. */
export function createProvider(
  keyRef: string,
  options: {
    timeoutMs: number;
    maxAttempts: number;
    endpoint?: string | undefined;
    region?: string | undefined;
    onAttemptFailed?: ((errorClass: ProviderErrorClass) => void) | undefined;
  },
): AwsKmsProvider {
  return new AwsKmsProvider({
    keyRef,
    timeoutMs: options.timeoutMs,
    maxAttempts: options.maxAttempts,
    endpoint: options.endpoint,
    region: options.region,
    onAttemptFailed: options.onAttemptFailed,
  });
}

/** The part of an SDK command this provider instruments. */
type TrackableCommand = EncryptCommand | DecryptCommand | DescribeKeyCommand;

// Records each attempt's error from inside the retry loop (finalizeRequest, after the retry
// middleware), so a deadline that fires during throttling backoff is still reported as throttling,
// and hands every failed attempt, retried or not, to `onFailure`.
function trackLastAttempt(
  command: TrackableCommand,
  onFailure: (error: unknown) => void,
): { error: unknown } {
  const seen: { error: unknown } = { error: undefined };
  (command as DescribeKeyCommand).middlewareStack.add(
    (next) => async (args) => {
      try {
        return await next(args);
      } catch (error) {
        seen.error = error;
        onFailure(error);
        throw error;
      }
    },
    { step: "finalizeRequest", priority: "low", name: "kmsEnvelopeLastAttempt" },
  );
  return seen;
}

function encryptionContext(context: WrapContext): Record<string, string> {
  if (context.keyId === "")
    throw new KmsEnvelopeError("INVALID_REQUEST", "a wrap context needs the master key's key id");
  return { [CONTEXT_PURPOSE]: "master-key", [CONTEXT_KEY_ID]: context.keyId };
}

function unusableKey(metadata: KeyMetadata, key: string): string | undefined {
  switch (metadata.KeyState) {
    case "Enabled":
      break;
    case "Disabled":
      return `AWS KMS key ${key} is disabled: enable it (aws kms enable-key --key-id ${key})`;
    case "PendingDeletion":
    case "PendingReplicaDeletion":
      return `AWS KMS key ${key} is scheduled for deletion: cancel it (aws kms cancel-key-deletion --key-id ${key}) and enable the key`;
    case "PendingImport":
      return `AWS KMS key ${key} has no key material: import it (aws kms import-key-material)`;
    case "Unavailable":
      return `AWS KMS key ${key} is unavailable: reconnect its custom key store`;
    default:
      return `AWS KMS key ${key} is ${metadata.KeyState ?? "in an unknown state"}: wait until it is Enabled`;
  }
  if (metadata.KeyUsage !== undefined && metadata.KeyUsage !== "ENCRYPT_DECRYPT") {
    return `AWS KMS key ${key} has usage ${metadata.KeyUsage}: use a symmetric ENCRYPT_DECRYPT key`;
  }
  if (metadata.KeySpec !== undefined && metadata.KeySpec !== "SYMMETRIC_DEFAULT") {
    return `AWS KMS key ${key} has key spec ${metadata.KeySpec}: use a SYMMETRIC_DEFAULT key`;
  }
  return undefined;
}

function integerOption(option: string, value: number, minimum: number, maximum: number): number {
  if (!Number.isInteger(value) || value < minimum || value > maximum) {
    throw invalidConfig(
      `aws provider option ${option} must be an integer from ${minimum} to ${maximum}, not ${value}`,
    );
  }
  return value;
}

function checkEndpoint(endpoint: string): void {
  let url: URL | undefined;
  try {
    url = new URL(endpoint);
  } catch {
    url = undefined;
  }
  if (url === undefined || (url.protocol !== "https:" && url.protocol !== "http:")) {
    throw invalidConfig(
      `AWS KMS endpoint ${JSON.stringify(endpoint)} is not an http(s) URL: give e.g. https://kms.eu-west-1.amazonaws.com`,
    );
  }
}

function invalidConfig(message: string): KmsEnvelopeError {
  return new KmsEnvelopeError("INVALID_CONFIG", message);
}

/** The KMS operations this provider calls. */
export type KmsOperation = "Encrypt" | "Decrypt" | "DescribeKey";

/** What the classifier knows about the failed call besides the error. */
export interface CallFacts {
  operation: KmsOperation;
  /** Key ARN when known, else the key reference. */
  key: string;
  keyRef: string;
  timeoutMs: number;
  endpoint: string;
  /** The caller's signal aborted the call. */
  cancelled: boolean;
  /** The per-call deadline fired. */
  timedOut: boolean;
  /** The error of the last attempt the SDK made, if any (the final error may be an abort). */
  lastAttemptError?: unknown;
}

// Errors that mean the daemon's credentials or signature were refused: an operator must fix the
// credentials (or the clock); retrying or restarting does not help, so they are "user".
const CREDENTIAL_ERRORS = new Set([
  "InvalidSignatureException",
  "UnrecognizedClientException",
  "IncompleteSignatureException",
  "MissingAuthenticationTokenException",
  "InvalidClientTokenId",
  "ExpiredTokenException",
  "SignatureDoesNotMatch",
]);
// KMS's ThrottlingException is unmodelled (aws/aws-sdk#362): it arrives as a generic
// KMSServiceException whose name is "ThrottlingException". The SDK retries the same set.
const THROTTLING_ERRORS = new Set([
  "ThrottlingException",
  "LimitExceededException",
  "TooManyRequestsException",
  "RequestLimitExceeded",
  "Throttling",
  "ThrottledException",
]);

interface SdkErrorShape {
  name?: unknown;
  message?: unknown;
  $metadata?: { httpStatusCode?: number; attempts?: number; requestId?: string };
}

/**
 * Maps an SDK failure to the provider error classes (PEERS.md A.1): user-caused, throttled,
 * corrupt, other. Messages say what to do and carry only public facts (key ARN, operation,
 * error name, request id, AWS's own message), never key bytes.
 */
export function classifyAwsError(
  error: unknown,
  facts: CallFacts,
): { errorClass: ProviderErrorClass; message: string } {
  const sdk = (typeof error === "object" && error !== null ? error : {}) as SdkErrorShape;
  const errorName = typeof sdk.name === "string" ? sdk.name : "Error";
  const status = sdk.$metadata?.httpStatusCode;
  const attempts = sdk.$metadata?.attempts;
  const requestId = sdk.$metadata?.requestId;
  const { operation, key } = facts;
  // The service's (or SDK's) own words help the operator; they never carry key material.
  const origin = status !== undefined ? "AWS says" : "SDK says";
  const detail =
    typeof sdk.message === "string" && sdk.message !== "" && sdk.message !== "UnknownError"
      ? `; ${origin}: ${JSON.stringify(sdk.message.slice(0, 300))}`
      : "";
  const trace = `${attempts !== undefined && attempts > 1 ? ` after ${attempts} attempts` : ""}${requestId !== undefined ? ` (request id ${requestId})` : ""}`;
  const result = (errorClass: ProviderErrorClass, message: string) => ({ errorClass, message });

  if (facts.cancelled)
    return result("other", `AWS KMS ${operation} on ${key} was cancelled by the caller`);
  if (facts.timedOut && isThrottling(facts.lastAttemptError)) {
    return result(
      "throttled",
      `AWS KMS throttled ${operation} on ${key} until the ${facts.timeoutMs} ms deadline: lower the request rate or raise the account's KMS request quota`,
    );
  }
  if (facts.timedOut || errorName === "TimeoutError") {
    return result(
      "other",
      `AWS KMS ${operation} on ${key} timed out after ${facts.timeoutMs} ms: check network access to ${facts.endpoint} (DNS, proxy, VPC endpoint, security groups) or raise the provider timeout`,
    );
  }
  if (isThrottling(error)) {
    return result(
      "throttled",
      `AWS KMS throttled ${operation} on ${key}${trace}: lower the request rate or raise the account's KMS request quota`,
    );
  }
  if (CREDENTIAL_ERRORS.has(errorName)) {
    return result(
      "user",
      `AWS refused this daemon's credentials for kms:${operation} (${errorName})${trace}: check the access key, secret and session token found by the SDK credential chain, and that the clock is in sync${detail}`,
    );
  }
  switch (errorName) {
    case "AccessDeniedException":
      return result(
        "user",
        `AWS KMS denied kms:${operation} on ${key}${trace}: grant kms:${operation} on ${key} to this daemon's IAM identity (key policy or IAM policy)${detail}`,
      );
    case "DisabledException":
      return result(
        "user",
        `AWS KMS key ${key} is disabled${trace}: enable it (aws kms enable-key --key-id ${key})`,
      );
    case "KMSInvalidStateException":
      return result(
        "user",
        `AWS KMS key ${key} is not usable in its current state, e.g. pending deletion${trace}: cancel the deletion (aws kms cancel-key-deletion --key-id ${key}) and enable the key${detail}`,
      );
    case "NotFoundException":
      return result(
        "user",
        `AWS KMS key ${facts.keyRef} was not found${trace}: check the key reference and region (the key may have been deleted)${detail}`,
      );
    case "IncorrectKeyException":
      return result(
        "user",
        `the wrapped key was made with another KMS key than ${facts.keyRef}${facts.keyRef.includes("alias/") ? " (was the alias retargeted?)" : ""}: unwrap it with the provider key recorded in the keyring`,
      );
    case "KeyUnavailableException":
      return result(
        "user",
        `AWS KMS key ${key} is unavailable${trace}: reconnect its custom or external key store`,
      );
    case "InvalidKeyUsageException":
      return result(
        "user",
        `AWS KMS key ${key} cannot ${operation} with SYMMETRIC_DEFAULT${trace}: use a symmetric ENCRYPT_DECRYPT key`,
      );
    case "InvalidCiphertextException":
      return result(
        "corrupt",
        `AWS KMS rejected the wrapped key as not made by ${key} for this key id (damaged, or bound to another key id)${trace}: restore the keyring entry from a backup`,
      );
    case "CredentialsProviderError":
      return result(
        "other",
        `no AWS credentials for kms:${operation}: give the daemon an IAM role (instance profile, IRSA, EKS Pod Identity) or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY${detail}`,
      );
  }
  if (typeof sdk.message === "string" && /region is missing/i.test(sdk.message)) {
    return result(
      "user",
      `no AWS region for ${facts.keyRef}: set the provider region or AWS_REGION, or use the key ARN`,
    );
  }
  if (status !== undefined && status >= 500) {
    return result(
      "other",
      `AWS KMS ${operation} on ${key} failed with ${errorName} (HTTP ${status})${trace}: a fault on the AWS side; it is retried on the next call${detail}`,
    );
  }
  return result(
    "other",
    `AWS KMS ${operation} on ${key} failed with ${errorName}${status !== undefined ? ` (HTTP ${status})` : ""}${trace}${detail}`,
  );
}

function isThrottling(error: unknown): boolean {
  const sdk = (typeof error === "object" && error !== null ? error : {}) as SdkErrorShape;
  return (
    (typeof sdk.name === "string" && THROTTLING_ERRORS.has(sdk.name)) ||
    sdk.$metadata?.httpStatusCode === 429
  );
}
