import { status } from "@grpc/grpc-js";
import { type ErrorCode, KmsEnvelopeError } from "../errors.js";

// One table from error code to gRPC status (SPEC.md §4): bad input is INVALID_ARGUMENT, an
// unknown key version NOT_FOUND, a custody outage UNAVAILABLE. Record<> makes it exhaustive.
const STATUS_BY_CODE: Record<ErrorCode, status> = {
  DECRYPTION_FAILED: status.INVALID_ARGUMENT,
  MALFORMED_CIPHERTEXT: status.INVALID_ARGUMENT,
  KEY_ID_MISMATCH: status.INVALID_ARGUMENT,
  INVALID_REQUEST: status.INVALID_ARGUMENT,
  UNKNOWN_KEY_ID: status.NOT_FOUND,
  KEY_RETIRED: status.NOT_FOUND,
  UNKNOWN_SERVICE: status.NOT_FOUND,
  PROVIDER_UNAVAILABLE: status.UNAVAILABLE,
  ENCRYPTION_SUSPENDED: status.UNAVAILABLE,
  INVALID_MASTER_KEY: status.FAILED_PRECONDITION,
  MISSING_MASTER_KEY: status.FAILED_PRECONDITION,
  INVALID_CONFIG: status.FAILED_PRECONDITION,
  UNMAPPED_RESOURCE: status.INVALID_ARGUMENT,
  SOCKET_IN_USE: status.INTERNAL,
  SOCKET_PATH_NOT_SOCKET: status.INTERNAL,
  DAEMON_UNREACHABLE: status.UNAVAILABLE,
  OVERLOADED: status.RESOURCE_EXHAUSTED,
  METHOD_NOT_FOUND: status.UNIMPLEMENTED,
  UNSUPPORTED_ENCODING: status.UNIMPLEMENTED,
  REQUEST_TOO_LARGE: status.RESOURCE_EXHAUSTED,
  CALL_TIMEOUT: status.DEADLINE_EXCEEDED,
  KMS_PLUGIN_FAILED: status.UNAVAILABLE,
  STORE_UNAVAILABLE: status.UNAVAILABLE,
  STORE_CONFLICT: status.ABORTED,
  STORE_MISSING: status.FAILED_PRECONDITION,
  RECORD_NOT_FOUND: status.NOT_FOUND,
  PLAINTEXT_CREDENTIAL: status.FAILED_PRECONDITION,
};

/** A gRPC status and the message sent with it. */
export interface CallFailure {
  code: status;
  details: string;
  /** True for failures we did not anticipate (bugs); logged with their stack. */
  unexpected: boolean;
}

/** Maps any thrown value to the status the caller sees; unexpected errors say nothing more. */
export function toCallFailure(error: unknown): CallFailure {
  if (error instanceof KmsEnvelopeError) {
    return { code: STATUS_BY_CODE[error.code], details: error.message, unexpected: false };
  }
  return { code: status.INTERNAL, details: "internal error: see the daemon log", unexpected: true };
}
