import type { Pkcs11KeyReference } from "./pkcs11-uri.js";
import { ProviderError, type ProviderErrorClass } from "./types.js";

/** The CKR_ name of a PKCS#11 failure reported by the binding, or undefined for anything else. */
export function ckrName(error: unknown): string | undefined {
  const message = (error as { message?: unknown } | null | undefined)?.message;
  if (typeof message !== "string") return undefined;
  return /^(CKR_[A-Z0-9_]+)/.exec(message)?.[1];
}

/** What a message may name: all public (paths, labels, the PIN's source, never the PIN). */
export interface TokenFacts {
  /** The module's path. */
  module: string;
  /** The token as the key reference selects it, e.g. `token "kmse"`. */
  token: string;
  /** The key object as the key reference selects it, e.g. `key object "kek"`. */
  object: string;
  /** Where the PIN comes from, e.g. `file:/etc/kmse/pin`; "no pin-source" without one. */
  pinSource: string;
}

/** The step of a provider call a failure happened in. */
type Pkcs11Step = "open" | "login" | "find" | "encrypt" | "decrypt";

/** A classified failure; `stale` when the session, handles or module state are gone and a new connection may succeed. */
interface ClassifiedFailure {
  readonly error: ProviderError;
  readonly stale: boolean;
}

// Failures after which the token may well answer again once sessions, the login, the key
// handle or the module itself are set up anew (SPEC.md §3: sessions are reopened, not given up).
const STALE = new Set([
  "CKR_SESSION_HANDLE_INVALID",
  "CKR_SESSION_CLOSED",
  "CKR_OBJECT_HANDLE_INVALID",
  "CKR_KEY_HANDLE_INVALID",
  "CKR_USER_NOT_LOGGED_IN",
  "CKR_CRYPTOKI_NOT_INITIALIZED",
  "CKR_TOKEN_NOT_PRESENT",
  "CKR_TOKEN_NOT_RECOGNIZED",
  "CKR_DEVICE_REMOVED",
  "CKR_DEVICE_ERROR",
  "CKR_DEVICE_MEMORY",
  "CKR_GENERAL_ERROR",
  "CKR_FUNCTION_FAILED",
  "CKR_OPERATION_ACTIVE",
  "CKR_OPERATION_NOT_INITIALIZED",
  "CKR_SLOT_ID_INVALID",
]);

/**
 * Maps a PKCS#11 failure to a ProviderError naming what to fix. `user`: the PIN, the key
 * object or its attributes, the mechanism policy — an operator must act. `other`: the token or
 * module is missing or failing, which may pass (a token put back, an HSM restarted). A damaged
 * wrapped key is not classified here: the provider tells it apart with a probe on the token.
 */
export function classifyPkcs11Error(
  error: unknown,
  step: Pkcs11Step,
  facts: TokenFacts,
): ClassifiedFailure {
  const ckr = ckrName(error);
  const { token, object, module } = facts;
  const result = (errorClass: ProviderErrorClass, message: string, stale = false) => ({
    error: new ProviderError(errorClass, message, { cause: error }),
    stale,
  });
  switch (ckr) {
    case "CKR_PIN_INCORRECT":
    case "CKR_PIN_INVALID":
    case "CKR_PIN_LEN_RANGE":
      return result(
        "user",
        `${token} refused the PIN from ${facts.pinSource} (wrong PIN, ${ckr}): write the token's user PIN there; the same PIN is not tried again, so health checks cannot lock the token`,
      );
    case "CKR_PIN_LOCKED":
      return result(
        "user",
        `the user PIN of ${token} is locked (${ckr}): unlock it with the security officer PIN (pkcs11-tool --login --login-type so --init-pin) and write the new PIN to ${facts.pinSource}`,
      );
    case "CKR_PIN_EXPIRED":
      return result(
        "user",
        `the user PIN of ${token} has expired (${ckr}): set a new one (pkcs11-tool --login --change-pin) and write it to ${facts.pinSource}`,
      );
    case "CKR_USER_PIN_NOT_INITIALIZED":
      return result(
        "user",
        `${token} has no user PIN (${ckr}): initialise it (softhsm2-util --init-token … --pin, or pkcs11-tool --login --login-type so --init-pin)`,
      );
    case "CKR_KEY_FUNCTION_NOT_PERMITTED":
      return result(
        "user",
        `${object} on ${token} may not ${step === "decrypt" ? "decrypt (CKA_DECRYPT is false)" : "encrypt (CKA_ENCRYPT is false)"} (${ckr}): the pkcs11 provider wraps with C_Encrypt and unwraps with C_Decrypt, so use an AES key with CKA_ENCRYPT and CKA_DECRYPT true`,
      );
    case "CKR_MECHANISM_INVALID":
    case "CKR_MECHANISM_PARAM_INVALID":
      return result(
        "user",
        `${token} does not allow CKM_AES_GCM with a 96-bit IV, additional authenticated data and a 128-bit tag for ${object} (mechanism not allowed, ${ckr}): allow that mechanism for the key in the token's policy, or use a token that offers it`,
      );
    case "CKR_KEY_TYPE_INCONSISTENT":
    case "CKR_KEY_SIZE_RANGE":
      return result(
        "user",
        `${object} on ${token} is not a key CKM_AES_GCM can use (${ckr}): name an AES-256 secret key`,
      );
    case "CKR_TOKEN_NOT_PRESENT":
    case "CKR_DEVICE_REMOVED":
    case "CKR_TOKEN_NOT_RECOGNIZED":
      return result(
        "other",
        `${token} is not present in PKCS#11 module ${module} (${ckr}): reconnect or restore the token (HSM partition, smart card, SoftHSM2 token directory); the provider reconnects on its next call`,
        true,
      );
    case "CKR_SESSION_COUNT":
      return result(
        "other",
        `${token} has no free session (${ckr}): close other applications' sessions or raise the token's session limit`,
      );
    case "CKR_USER_ANOTHER_ALREADY_LOGGED_IN":
    case "CKR_USER_TOO_MANY_TYPES":
      return result(
        "user",
        `another user is logged in to ${token} in this process (${ckr}): use the token's user login only`,
      );
  }
  if (ckr !== undefined && STALE.has(ckr)) {
    return result(
      "other",
      `PKCS#11 ${stepLabel(step)} on ${token} failed (${ckr}): the session, the key handle or module ${module} failed; the provider reconnects on its next call`,
      true,
    );
  }
  const detail =
    ckr ?? (error instanceof Error ? error.message.split("\n")[0]?.slice(0, 200) : String(error));
  return result(
    "other",
    `PKCS#11 ${stepLabel(step)} on ${token} failed (${detail}) in module ${module}`,
  );
}

function stepLabel(step: Pkcs11Step): string {
  switch (step) {
    case "open":
      return "opening a session";
    case "login":
      return "login";
    case "find":
      return `finding the key`;
    case "encrypt":
      return "wrap (C_Encrypt)";
    case "decrypt":
      return "unwrap (C_Decrypt)";
  }
}

/** How messages name the token, key and PIN source: what the reference says, never a secret. */
export function tokenFacts(reference: Pkcs11KeyReference): TokenFacts {
  const { token, slot, object, pinSource } = reference;
  const tokenName =
    token.label !== undefined
      ? `token ${JSON.stringify(token.label)}`
      : token.serial !== undefined
        ? `the token with serial ${JSON.stringify(token.serial)}`
        : `the token in slot ${slot.id}`;
  const id =
    object.id === undefined
      ? undefined
      : [...object.id].map((byte) => `%${byte.toString(16).padStart(2, "0")}`).join("");
  const objectName =
    object.label !== undefined
      ? `key object ${JSON.stringify(object.label)}${id === undefined ? "" : ` (id ${id})`}`
      : `the key object with id ${id}`;
  return {
    module: reference.modulePath,
    token: tokenName,
    object: objectName,
    pinSource:
      pinSource === undefined
        ? "no pin-source"
        : pinSource.kind === "file"
          ? `file:${pinSource.path}`
          : `env:${pinSource.variable}`,
  };
}
