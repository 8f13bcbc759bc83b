import { status } from "@grpc/grpc-js";
import type { GcpCredentialSource } from "./gcp-endpoint.js";
import { KEY_REF_SHAPE } from "./gcp-key-ref.js";
import { ProviderError, type ProviderErrorClass } from "./types.js";

/** The Cloud KMS operations this provider calls. */
export type CloudKmsOperation = "Encrypt" | "Decrypt";

/** A response that failed the client side of the CRC32C contract; worth a retry. */
export class IntegrityFailure extends Error {}

/** What the classifier knows about a failed attempt besides the error. */
interface AttemptFacts {
  operation: CloudKmsOperation;
  /** The CryptoKey name. */
  keyRef: string;
  /** Attempts made so far, the failed one included. */
  attempts: number;
  /** The deadline of the whole operation. */
  timeoutMs: number;
  /** The caller's signal aborted the operation. */
  cancelled: boolean;
  /** The key id a wrapped key belongs to (Decrypt), named when it does not decrypt. */
  keyId: string | undefined;
  /** Where tokens come from, named when they cannot be had or are refused. */
  credentials: GcpCredentialSource;
}

/** A failure as a classified ProviderError, and whether another attempt may succeed. */
export interface ClassifiedFailure {
  error: ProviderError;
  retry: boolean;
}

// gcloud recognises a server-side checksum failure by this wording (INVALID_ARGUMENT); it is
// worth a retry, unlike other INVALID_ARGUMENTs (data-integrity guidelines).
const SERVER_CHECKSUM_FAILURE = /The checksum in field \S+ did not match the data in field/;

/**
 * Maps a failed attempt (a gRPC status, an integrity failure, a cancellation) to the provider
 * error classes — user-caused, throttled, corrupt, other — with a message that says what to do,
 * and says whether it is worth retrying (integrity failures, throttling, UNAVAILABLE).
 */
export function classifyGcpError(error: unknown, facts: AttemptFacts): ClassifiedFailure {
  const { operation, attempts, keyId } = facts;
  const fail = (errorClass: ProviderErrorClass, message: string, retry = false) => ({
    error: new ProviderError(errorClass, message, { cause: error }),
    retry,
  });
  const key = facts.keyRef;
  const tries = `after ${attempts} attempt${attempts === 1 ? "" : "s"}`;
  if (facts.cancelled)
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
  const source = facts.credentials;
  if (raw.startsWith("Getting metadata from plugin failed")) {
    return fail(
      "user",
      `no usable Google credentials for Cloud KMS from ${source.name}: ${source.fix}; without any, set GOOGLE_APPLICATION_CREDENTIALS, or run with workload identity or on a GCE/GKE metadata server (${raw.slice(0, 300)})`,
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
        `Cloud KMS rejected the credentials of ${source.name} for ${operation}: ${source.fix}${details}`,
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
        `Cloud KMS did not answer ${operation} within ${facts.timeoutMs} ms: check network access to Cloud KMS or raise the provider timeout`,
      );
    case status.UNAVAILABLE:
      return fail(
        "other",
        `Cloud KMS is unavailable for ${operation} ${tries}: check network access to cloudkms.googleapis.com${details}`,
        true,
      );
  }
  const name = typeof code === "number" ? (status[code] ?? `code ${code}`) : "an unexpected error";
  return fail("other", `Cloud KMS ${operation} on ${key} failed with ${name}${details}`);
}

function statusDetails(error: unknown): string {
  const details = (error as { details?: unknown } | null)?.details;
  return typeof details === "string" ? details : "";
}
