import { randomBytes, timingSafeEqual } from "node:crypto";
import { lengthPrefixed } from "../src/crypto/length-prefix.js";
import { wipe } from "../src/crypto/wipe.js";
import { ConfigError, KmsEnvelopeError } from "../src/errors.js";
import { abortable } from "./abortable.js";
import { type TokenFacts, tokenFacts } from "./pkcs11-errors.js";
import { IV_BYTES, RefusedCiphertext, StaleConnection, TAG_BYTES } from "./pkcs11-protocol.js";
import { ModuleThread } from "./pkcs11-thread.js";
import { type Pkcs11KeyReference, parsePkcs11Uri } from "./pkcs11-uri.js";
import { requireKeyToWrap } from "./preconditions.js";
import {
  type CustodyProvider,
  ProviderError,
  type ProviderErrorClass,
  type ProviderKeyDescription,
  type ProviderOptions,
  type WrapContext,
} from "./types.js";

/** Provider name: the key-id prefix and the registry name. */
export const name = "pkcs11";

/** How a Pkcs11Provider is built. */
interface Pkcs11ProviderOptions {
  /** An RFC 7512 `pkcs11:` URI naming the token, the AES key, module-path and pin-source. */
  keyRef: string;
  /** Deadline of one provider call, reconnections included. Default 10 000 ms. */
  timeoutMs?: number | undefined;
  /** Attempts per call when a session, login or the module has to be set up anew. Default 3. */
  maxAttempts?: number | undefined;
  /** Where `pin-source=env:VARIABLE` is read from. Default: the process environment. */
  environment?: NodeJS.ProcessEnv | undefined;
  /** Called with the class of every failed attempt, retried ones included (metrics). */
  onAttemptFailed?: ((errorClass: ProviderErrorClass) => void) | undefined;
}

const KEY_BYTES = 32;
// The first byte of a wrapped key names its layout, so another mechanism can be added later
// without guessing: 0x01 = AES-256-GCM on the token, 96-bit IV, 128-bit tag.
const FORMAT_GCM = 0x01;
const WRAPPED_BYTES = 1 + IV_BYTES + KEY_BYTES + TAG_BYTES;
const AAD_LABEL = Buffer.from("kms-envelope/v1/pkcs11-wrap\u0000", "utf8");
const HEALTH_KEY_ID = "pkcs11:health-probe";
const PROBE_KEY_ID = "pkcs11:authentication-probe";

// The additional authenticated data: the format byte and the key id, so a wrapped key opens
// only as the key id it was wrapped for (another id fails the GCM tag on the token).
function additionalData(keyId: string): Buffer {
  if (keyId === "")
    throw new KmsEnvelopeError("INVALID_REQUEST", "a wrap context needs the master key's key id");
  return Buffer.concat([AAD_LABEL, Buffer.from([FORMAT_GCM]), lengthPrefixed(keyId)]);
}

/**
 * The `pkcs11` custody provider: master keys are wrapped by an AES-256 key that never leaves a
 * PKCS#11 token (an HSM, a smart card, SoftHSM2). wrapKey is one C_Encrypt and unwrapKey one
 * C_Decrypt with CKM_AES_GCM on the token, the key id bound as additional authenticated data;
 * the wrapped key is `0x01 ‖ IV(12) ‖ ciphertext(32) ‖ tag(16)`. Every call into the module
 * runs on a thread of its own (a hung token cannot stall the daemon); sessions, the login and
 * the module itself are set up anew after the token or module fails; checkHealth is a real
 * encrypt and decrypt on the token.
 */
export class Pkcs11Provider implements CustodyProvider {
  readonly name = name;
  readonly #reference: Pkcs11KeyReference;
  readonly #facts: TokenFacts;
  readonly #timeoutMs: number;
  readonly #maxAttempts: number;
  readonly #onAttemptFailed: ((errorClass: ProviderErrorClass) => void) | undefined;
  readonly #instance = nextInstance++;
  readonly #thread: ModuleThread;
  #closed = false;

  /** Checks the key reference now, so a mistake in it fails start-up with a ConfigError. */
  constructor(options: Pkcs11ProviderOptions) {
    this.#reference = parsePkcs11Uri(options.keyRef);
    this.#facts = tokenFacts(this.#reference);
    this.#timeoutMs = integer("timeoutMs", options.timeoutMs ?? 10_000, 1, 300_000);
    this.#maxAttempts = integer("maxAttempts", options.maxAttempts ?? 3, 1, 10);
    this.#onAttemptFailed = options.onAttemptFailed;
    const source = this.#reference.pinSource;
    const environment = options.environment ?? process.env;
    this.#thread = ModuleThread.acquire(this.#reference.modulePath);
    this.#thread.open(
      this.#instance,
      this.#reference.uri,
      source?.kind === "env" ? environment[source.variable] : undefined,
    );
  }

  describe(): ProviderKeyDescription {
    return { provider: this.name, keyRef: this.#reference.uri };
  }

  async wrapKey(key: Uint8Array, context: WrapContext, signal?: AbortSignal): Promise<Uint8Array> {
    requireKeyToWrap(this.name, key, KEY_BYTES);
    const aad = additionalData(context.keyId);
    return this.#call(signal, async (token) => {
      // Random IVs: a key wraps a handful of master keys (and health probes), far below the
      // 2^32 invocations GCM allows one key with random 96-bit IVs.
      const iv = randomBytes(IV_BYTES);
      const sealed = await token("encrypt", key, iv, aad);
      if (sealed.length !== KEY_BYTES + TAG_BYTES) {
        throw new ProviderError(
          "corrupt",
          `${this.#facts.token} returned ${sealed.length} bytes for a ${KEY_BYTES}-byte key under CKM_AES_GCM, not ${KEY_BYTES + TAG_BYTES}: check the PKCS#11 module ${this.#facts.module}`,
        );
      }
      return Uint8Array.from(Buffer.concat([Buffer.from([FORMAT_GCM]), iv, sealed]));
    });
  }

  async unwrapKey(
    wrapped: Uint8Array,
    context: WrapContext,
    signal?: AbortSignal,
  ): Promise<Uint8Array> {
    if (wrapped.length !== WRAPPED_BYTES || wrapped[0] !== FORMAT_GCM) {
      throw new ProviderError(
        "corrupt",
        `the wrapped key for ${context.keyId} is not a pkcs11 wrapped key (${wrapped.length} bytes, format ${wrapped[0] ?? "none"}; expected ${WRAPPED_BYTES} bytes, format ${FORMAT_GCM}): restore the keyring entry from a backup`,
      );
    }
    const aad = additionalData(context.keyId);
    const iv = wrapped.subarray(1, 1 + IV_BYTES);
    const sealed = wrapped.subarray(1 + IV_BYTES);
    return this.#call(signal, async (token) => {
      let key: Uint8Array;
      try {
        key = await token("decrypt", sealed, iv, aad);
      } catch (error) {
        if (!(error instanceof RefusedCiphertext)) throw error;
        // The token answers a wrong tag and some of its own failures alike: if it still
        // decrypts what it has just encrypted, the wrapped key is what failed.
        await this.#roundTrip(token, PROBE_KEY_ID);
        throw new ProviderError(
          "corrupt",
          `the wrapped key for ${context.keyId} failed authentication under ${this.#facts.object} on ${this.#facts.token}: it was wrapped by another key or for another key id, or it is damaged; unwrap it with the key reference the keyring records, or restore the entry from a backup`,
        );
      }
      if (key.length !== KEY_BYTES) {
        wipe(key);
        throw new ProviderError(
          "corrupt",
          `the wrapped key for ${context.keyId} unwrapped to ${key.length} bytes, not ${KEY_BYTES}: restore the keyring entry from a backup`,
        );
      }
      return key;
    });
  }

  /**
   * A real round trip on the token — C_Encrypt then C_Decrypt of random bytes under the key —
   * so a missing token, a wrong or locked PIN, a deleted key, a key whose CKA_ENCRYPT or
   * CKA_DECRYPT was turned off, or a failing module all fail the check.
   */
  async checkHealth(signal?: AbortSignal): Promise<void> {
    await this.#call(signal, (token) => this.#roundTrip(token, HEALTH_KEY_ID));
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#thread.close(this.#instance, Math.min(this.#timeoutMs, 5000));
  }

  async #roundTrip(token: TokenCall, keyId: string): Promise<void> {
    const sample = randomBytes(KEY_BYTES);
    const iv = randomBytes(IV_BYTES);
    const aad = additionalData(keyId);
    let back: Uint8Array | undefined;
    try {
      const sealed = await token("encrypt", sample, iv, aad);
      try {
        back = await token("decrypt", sealed, iv, aad);
      } catch (error) {
        if (!(error instanceof RefusedCiphertext)) throw error;
        throw new StaleConnection(
          new ProviderError(
            "other",
            `${this.#facts.token} could not decrypt what it had just encrypted under ${this.#facts.object} (${error.message}): the token or module ${this.#facts.module} is failing`,
          ),
        );
      }
      if (back.length !== sample.length || !timingSafeEqual(back, sample)) {
        throw new ProviderError(
          "corrupt",
          `${this.#facts.token} returned other bytes than it was given in a round trip under ${this.#facts.object}: the token or module ${this.#facts.module} is faulty`,
        );
      }
    } finally {
      wipe(sample, back);
    }
  }

  /**
   * Runs one provider call, within the deadline and the caller's signal. A connection that
   * went stale has been dropped by the module's thread, and the call is tried again on a new
   * one, up to maxAttempts; every failed attempt is reported to onAttemptFailed.
   */
  async #call<T>(
    signal: AbortSignal | undefined,
    body: (token: TokenCall) => Promise<T>,
  ): Promise<T> {
    if (this.#closed) {
      throw new ProviderError("other", `the pkcs11 provider for ${this.#facts.token} is closed`);
    }
    const deadline = Date.now() + this.#timeoutMs;
    const timeout = AbortSignal.timeout(this.#timeoutMs);
    const callSignal = signal === undefined ? timeout : AbortSignal.any([timeout, signal]);
    const token: TokenCall = (kind, input, iv, aad) =>
      this.#thread.operate(
        kind,
        this.#instance,
        // Copies: the input buffer is moved to the module's thread.
        { input: Uint8Array.from(input), iv: Uint8Array.from(iv), aad: Uint8Array.from(aad) },
        deadline,
        callSignal,
      );
    const attempts = async (): Promise<T> => {
      for (let attempt = 1; ; attempt += 1) {
        try {
          callSignal.throwIfAborted();
          return await body(token);
        } catch (error) {
          if (callSignal.aborted) throw callSignal.reason;
          const stale = error instanceof StaleConnection;
          const failure = stale ? error.failure : error;
          this.#onAttemptFailed?.(failure instanceof ProviderError ? failure.errorClass : "other");
          if (!stale || attempt >= this.#maxAttempts) throw failure;
        }
      }
    };
    const running = attempts();
    try {
      return await abortable(running, callSignal);
    } catch (error) {
      if (error !== callSignal.reason) throw error;
      // The token may still answer later: drop a key nobody is waiting for, and any error.
      running.then((value) => value instanceof Uint8Array && wipe(value)).catch(() => undefined);
      if (signal?.aborted === true) {
        throw new ProviderError(
          "other",
          `the pkcs11 call on ${this.#facts.token} was cancelled by the caller`,
        );
      }
      throw new ProviderError(
        "other",
        `${this.#facts.token} did not answer within ${this.#timeoutMs} ms: check the token and PKCS#11 module ${this.#facts.module} (an HSM's network path, a busy or hung token), or raise the provider timeout`,
      );
    }
  }
}

/** One C_Encrypt or C_Decrypt on the token, through the module's thread. */
type TokenCall = (
  kind: "encrypt" | "decrypt",
  input: Uint8Array,
  iv: Uint8Array,
  aad: Uint8Array,
) => Promise<Uint8Array>;

// Tells the module's thread which instance's connection a request is for.
let nextInstance = 1;

/** Registry entry point (providers/registry.ts): one provider for one key reference. */
export function createProvider(keyRef: string, options: ProviderOptions): Pkcs11Provider {
  return new Pkcs11Provider({
    keyRef,
    timeoutMs: options.timeoutMs,
    maxAttempts: options.maxAttempts,
    environment: options.environment,
    onAttemptFailed: options.onAttemptFailed,
  });
}

function integer(field: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(
      `pkcs11 provider option ${field}`,
      `${value} is not a whole number from ${min} to ${max}`,
      `give a whole number from ${min} to ${max}`,
    );
  }
  return value;
}
