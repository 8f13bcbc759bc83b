import type {
  DecryptCommand,
  DescribeKeyCommand,
  EncryptCommand,
  KeyMetadata,
} from "@aws-sdk/client-kms";
import type { AwsCredentialSource } from "./aws-credentials.js";
import type { ProviderErrorClass } from "./types.js";

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
  /** Where the SDK's credentials come from, named when they are refused or cannot be had. */
  credentials: AwsCredentialSource;
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
// STS refusing the web identity behind the credentials (IRSA): the role's trust policy or the
// projected token must be fixed. IDPCommunicationError is transient and stays "other".
const WEB_IDENTITY_ERRORS = new Set([
  "InvalidIdentityTokenException",
  "IDPRejectedClaimException",
  "AccessDenied",
  "RegionDisabledException",
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
  const source = facts.credentials;
  if (CREDENTIAL_ERRORS.has(errorName)) {
    const expired =
      errorName === "ExpiredTokenException" ? "they expired and were not renewed; " : "";
    return result(
      "user",
      `AWS refused this daemon's credentials for kms:${operation} (${errorName}), ${source.name}${trace}: ${expired}${source.fix}${detail}`,
    );
  }
  if (WEB_IDENTITY_ERRORS.has(errorName)) {
    return result(
      "user",
      `AWS STS refused to issue credentials for kms:${operation} (${errorName}) from ${source.name}${trace}: ${source.fix}${detail}`,
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
      // No source in the chain gave credentials (a refused endpoint, an agent or IMDS that
      // does not answer, nothing configured): an operator must act, a restart cures none.
      return result(
        "user",
        `no AWS credentials for kms:${operation} from ${source.name}: ${source.fix}; without any IAM role, set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY${detail}`,
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

/** The part of an SDK command this provider instruments. */
export type TrackableCommand = EncryptCommand | DecryptCommand | DescribeKeyCommand;

/**
 * Records each attempt's error from inside the retry loop (finalizeRequest, after the retry
 * middleware), so a deadline that fires during throttling backoff is still reported as
 * throttling, and hands every failed attempt, retried or not, to `onFailure`.
 */
export function trackLastAttempt(
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

/** Why a described key cannot wrap or unwrap (an operator must act: "user"), or undefined. */
export function unusableKey(metadata: KeyMetadata, key: string): string | undefined {
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
