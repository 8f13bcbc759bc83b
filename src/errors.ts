/**
 * Every failure kms-envelope reports is a KmsEnvelopeError with a stable string `code`, so
 * callers, the gRPC status table and metrics can branch on it without parsing messages.
 *
 * @remarks
 * What the codes a library caller meets mean:
 *
 * - `DECRYPTION_FAILED`: a value failed authentication (corrupt, tampered, or moved to another
 *   place); deliberately says no more.
 *
 * - `MALFORMED_CIPHERTEXT`: a stored value does not have the expected structure.
 *
 * - `UNKNOWN_KEY_ID`, `KEY_RETIRED`: the value names a master-key version that is not loaded,
 *   or is retired in the keyring.
 *
 * - `INVALID_REQUEST`: an argument is invalid (a field value of the wrong type, a missing
 *   workspace); the message names it.
 *
 * - `INVALID_CONFIG`: a configuration (EncryptionConfiguration, field map, guard options, store
 *   URL) is refused; the message says what to fix.
 *
 * - `UNMAPPED_RESOURCE`: the field map does not list the resource.
 *
 * - `KMS_PLUGIN_FAILED`: a KMS plugin an EncryptionConfiguration names failed or is unreachable.
 *
 * - `DAEMON_UNREACHABLE`: the kms-envelope daemon's field service is unreachable or failing, or
 *   answered something other than what it was asked.
 *
 * - `STORE_UNAVAILABLE`: the database cannot be opened or reached, or its schema is newer.
 *
 * - `STORE_CONFLICT`: a record exists already, or changed (or was deleted) since it was read.
 *
 * - `STORE_MISSING`: a store opened read-only does not exist (or has no kms-envelope schema).
 *
 * - `RECORD_NOT_FOUND`: the record asked for by id does not exist (in that workspace).
 *
 * - `PLAINTEXT_CREDENTIAL`: the plaintext guard refused a write.
 *
 * - `PROVIDER_UNAVAILABLE`: a custody provider failed (see `ProviderError`).
 *
 * The others are the daemon's and the CLI's (socket, master key, request limits).
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

/** One of {@link ERROR_CODES}: the `code` of every {@link KmsEnvelopeError}. */
export type ErrorCode = (typeof ERROR_CODES)[number];

// Symbol.for, so that every copy of the package loaded into one process shares the key.
const ERROR_CLASSES = Symbol.for("kms-envelope/error-classes");

/**
 * Base class of every error kms-envelope raises on purpose. Messages are one line, say what to
 * do, and never contain keys, plaintext or tokens (key ids, which are public, may appear).
 */
export class KmsEnvelopeError extends Error {
  /** Stable machine-readable identifier of the failure; branch on it, not on the message. */
  readonly code: ErrorCode;

  /**
   * @param code - The failure's code.
   * @param message - One line for an operator; must not contain secrets.
   * @param options - `cause`: the underlying error, kept for debugging.
   */
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "KmsEnvelopeError";
    this.code = code;
    // The names of the error's classes, most derived first, under a registry-wide symbol.
    const classes: string[] = [];
    for (
      let type: { name: string } = new.target;
      type !== Error;
      type = Object.getPrototypeOf(type)
    )
      classes.push(type.name);
    Object.defineProperty(this, ERROR_CLASSES, { value: Object.freeze(classes) });
  }

  /**
   * True for errors of this class, including those made by another copy of kms-envelope: a
   * provider module that resolved its own copy of the package throws errors whose classes are
   * not this copy's, and they must still be recognised (a revoked key classified as `user`,
   * not `other`).
   *
   * @param value - Anything.
   */
  static override [Symbol.hasInstance](value: unknown): boolean {
    // biome-ignore lint/complexity/noThisInStatic: the class on the right of instanceof, a subclass included
    if (Function.prototype[Symbol.hasInstance].call(this, value)) return true;
    const classes = (value as { [ERROR_CLASSES]?: unknown } | null | undefined)?.[ERROR_CLASSES];
    // biome-ignore lint/complexity/noThisInStatic: the class on the right of instanceof, a subclass included
    return Array.isArray(classes) && classes.includes(this.name);
  }
}

/**
 * A configuration or invocation the operator must fix (code `INVALID_CONFIG`). `setting` names
 * what is at fault — a flag (`--socket`), a field (`keyring k.yaml versions.2.keyId`), a
 * variable — so callers can point at it without parsing prose, the way jose's
 * JWTClaimValidationFailed carries `claim`; the message always says what to do. Callers never
 * pass key material or plaintext in any of the three parts.
 */
export class ConfigError extends KmsEnvelopeError {
  /** The flag, field or setting at fault. */
  readonly setting: string;

  /**
   * @param setting - The flag, field or setting at fault, as the operator writes it.
   * @param problem - What is wrong with it.
   * @param remedy - What to do about it.
   * @param options - `cause`: the underlying error, kept for debugging.
   */
  constructor(setting: string, problem: string, remedy: string, options?: { cause?: unknown }) {
    // The one shape of every configuration message: where, what is wrong, then what to do.
    super("INVALID_CONFIG", `${setting}: ${problem} (${remedy})`, options);
    this.name = "ConfigError";
    this.setting = setting;
  }
}

/**
 * The message of anything thrown, for logs and one-line errors (never a stack).
 *
 * @param error - Any thrown value.
 * @returns Its `message` for an Error, else its string form.
 */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * The one error every authentication failure becomes (SPEC.md §2): the message never says
 * whether the key, nonce, MAC or context was wrong, so it cannot serve as an oracle.
 */
export class DecryptionFailedError extends KmsEnvelopeError {
  /** Code `DECRYPTION_FAILED`, with the one fixed message. */
  constructor() {
    super("DECRYPTION_FAILED", "decryption failed: the value is corrupt or does not belong here");
    this.name = "DecryptionFailedError";
  }
}

/** Raised when bytes or text do not have the documented structure, before any key is used. */
export class MalformedCiphertextError extends KmsEnvelopeError {
  /**
   * Code `MALFORMED_CIPHERTEXT`.
   *
   * @param detail - What is wrong with the structure; must not quote the value.
   */
  constructor(detail: string) {
    super("MALFORMED_CIPHERTEXT", `malformed ciphertext: ${detail}`);
    this.name = "MalformedCiphertextError";
  }
}

/** Raised when a key id names no master-key version this daemon holds. */
export class UnknownKeyIdError extends KmsEnvelopeError {
  /**
   * Code `UNKNOWN_KEY_ID`.
   *
   * @param keyId - The key id the value names (public; quoted, at most 80 characters).
   */
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
  /**
   * Code `INVALID_REQUEST`.
   *
   * @param message - Names the field and says what to give instead.
   */
  constructor(message: string) {
    super("INVALID_REQUEST", message);
    this.name = "InvalidRequestError";
  }
}
