/**
 * Every failure kms-envelope reports is a KmsEnvelopeError with a stable string `code`, so
 * callers, the gRPC status table and metrics can branch on it without parsing messages.
 */
export const ERROR_CODES = [
  "DECRYPTION_FAILED",
  "MALFORMED_CIPHERTEXT",
  "UNKNOWN_KEY_ID",
  "KEY_RETIRED",
  "KEY_ID_MISMATCH",
  "INVALID_REQUEST",
  "UNKNOWN_SERVICE",
  "PROVIDER_UNAVAILABLE",
  "ENCRYPTION_SUSPENDED",
  "INVALID_MASTER_KEY",
  "MISSING_MASTER_KEY",
  "INVALID_CONFIG",
  "UNMAPPED_RESOURCE",
  "SOCKET_IN_USE",
  "SOCKET_PATH_NOT_SOCKET",
  "DAEMON_UNREACHABLE",
  "OVERLOADED",
  "METHOD_NOT_FOUND",
  "UNSUPPORTED_ENCODING",
  "REQUEST_TOO_LARGE",
  "CALL_TIMEOUT",
  "KMS_PLUGIN_FAILED",
  "STORE_UNAVAILABLE",
  "STORE_CONFLICT",
  "STORE_MISSING",
  "RECORD_NOT_FOUND",
  "PLAINTEXT_CREDENTIAL",
] as const;

/** One of ERROR_CODES. */
export type ErrorCode = (typeof ERROR_CODES)[number];

/** Base class of every error kms-envelope raises on purpose. */
export class KmsEnvelopeError extends Error {
  /** Stable machine-readable identifier of the failure. */
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "KmsEnvelopeError";
    this.code = code;
  }
}

/**
 * A configuration or invocation the operator must fix (code INVALID_CONFIG). `setting` names
 * what is at fault — a flag (`--socket`), a field (`keyring k.yaml versions.2.keyId`), a
 * variable — so callers can point at it without parsing prose, the way jose's
 * JWTClaimValidationFailed carries `claim`; the message always says what to do. Callers never
 * pass key material or plaintext in any of the three parts.
 */
export class ConfigError extends KmsEnvelopeError {
  /** The flag, field or setting at fault. */
  readonly setting: string;

  constructor(setting: string, problem: string, remedy: string, options?: { cause?: unknown }) {
    // The one shape of every configuration message: where, what is wrong, then what to do.
    super("INVALID_CONFIG", `${setting}: ${problem} (${remedy})`, options);
    this.name = "ConfigError";
    this.setting = setting;
  }
}

/** The message of anything thrown, for logs and one-line errors (never a stack). */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * The one error every authentication failure becomes (SPEC.md §2): the message never says
 * whether the key, nonce, MAC or context was wrong, so it cannot serve as an oracle.
 */
export class DecryptionFailedError extends KmsEnvelopeError {
  constructor() {
    super("DECRYPTION_FAILED", "decryption failed: the value is corrupt or does not belong here");
    this.name = "DecryptionFailedError";
  }
}

/** Raised when bytes or text do not have the documented structure, before any key is used. */
export class MalformedCiphertextError extends KmsEnvelopeError {
  constructor(detail: string) {
    super("MALFORMED_CIPHERTEXT", `malformed ciphertext: ${detail}`);
    this.name = "MalformedCiphertextError";
  }
}

/** Raised when a key id names no master-key version this daemon holds. */
export class UnknownKeyIdError extends KmsEnvelopeError {
  constructor(keyId: string) {
    // Key ids are public (KMS-CONTRACT.md §2.3), so naming one is safe and helps the operator.
    super(
      "UNKNOWN_KEY_ID",
      `unknown key id ${JSON.stringify(keyId.slice(0, 80))}: start the daemon with that master-key version (for the local provider, add it to ENCRYPTION_MASTER_KEY_PREVIOUS)`,
    );
    this.name = "UnknownKeyIdError";
  }
}

/** Raised for a request that fails validation at the edge; the message names the field. */
export class InvalidRequestError extends KmsEnvelopeError {
  constructor(message: string) {
    super("INVALID_REQUEST", message);
    this.name = "InvalidRequestError";
  }
}
