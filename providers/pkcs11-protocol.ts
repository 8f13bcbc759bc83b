import { ProviderError, type ProviderErrorClass } from "./types.js";

// Messages between the pkcs11 provider and the worker thread that owns a PKCS#11 module. Every
// call into a module runs on that thread: several of them are synchronous in the binding, and a
// token that hangs must not hold the event loop that serves kube-apiserver.

/** A GCM IV of 96 bits, the length GCM is specified for without GHASH of the IV. */
export const IV_BYTES = 12;
/** The full 128-bit tag: a shorter one weakens authentication for nothing here. */
export const TAG_BYTES = 16;

/** What the provider asks of the module's thread. */
export type ToModuleThread =
  | {
      kind: "open";
      instance: number;
      keyRef: string;
      /** The PIN itself when the reference says pin-source=env:VARIABLE (the worker has no env). */
      environmentPin: string | undefined;
    }
  | {
      kind: "encrypt" | "decrypt";
      id: number;
      instance: number;
      /** Date.now() after which nobody waits for the answer: a backlog is skipped, not run. */
      deadline: number;
      input: Uint8Array;
      iv: Uint8Array;
      aad: Uint8Array;
    }
  | { kind: "cancel"; id: number }
  | { kind: "close"; id: number; instance: number };

/** How a token operation failed, as the provider must treat it. */
interface TokenFailure {
  /** stale: the connection was dropped, try again; refused: C_Decrypt refused the ciphertext. */
  kind: "stale" | "refused" | "final";
  errorClass: ProviderErrorClass;
  message: string;
}

/** What the module's thread answers. */
export type FromModuleThread =
  | { kind: "result"; id: number; bytes: Uint8Array }
  | { kind: "failure"; id: number; failure: TokenFailure }
  | { kind: "closed"; id: number };

/**
 * The session, key handle, login or module state went away: the connection was dropped, and a
 * new one may succeed; `failure` is reported if none does.
 */
export class StaleConnection extends Error {
  readonly failure: ProviderError;
  constructor(failure: ProviderError) {
    super(failure.message, { cause: failure });
    this.name = "StaleConnection";
    this.failure = failure;
  }
}

/**
 * C_Decrypt refused the ciphertext: modules report a GCM tag that does not verify with codes
 * (SoftHSM2: CKR_GENERAL_ERROR) that can also mean a failing token, which only a probe tells
 * apart.
 */
export class RefusedCiphertext extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "RefusedCiphertext";
  }
}

/** A failure as it crosses the thread boundary. */
export function toTokenFailure(error: unknown): TokenFailure {
  if (error instanceof StaleConnection)
    return { kind: "stale", errorClass: error.failure.errorClass, message: error.message };
  if (error instanceof RefusedCiphertext)
    return { kind: "refused", errorClass: "corrupt", message: error.message };
  if (error instanceof ProviderError)
    return { kind: "final", errorClass: error.errorClass, message: error.message };
  const message = error instanceof Error ? error.message : String(error);
  return { kind: "final", errorClass: "other", message: message.split("\n")[0] ?? "" };
}

/** The failure again as the error the provider's logic expects. */
export function fromTokenFailure(failure: TokenFailure): Error {
  const error = new ProviderError(failure.errorClass, failure.message);
  if (failure.kind === "stale") return new StaleConnection(error);
  if (failure.kind === "refused") return new RefusedCiphertext(failure.message);
  return error;
}
