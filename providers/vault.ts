import { randomBytes, timingSafeEqual } from "node:crypto";
import { MASTER_KEY_BYTES } from "../src/crypto/master-key.js";
import { wipe } from "../src/crypto/wipe.js";
import { ConfigError, KmsEnvelopeError } from "../src/errors.js";
import { integerOption, requireKeyToWrap, requireWrappedKey } from "./preconditions.js";
import {
  type CustodyProvider,
  ProviderError,
  type ProviderErrorClass,
  type ProviderKeyDescription,
  type WrapContext,
} from "./types.js";
import { VaultHttp } from "./vault-http.js";
import { isLoopback, parseVaultKeyRef, type VaultKeyReference } from "./vault-key-ref.js";
import { VaultSession } from "./vault-session.js";
import { readVaultSettings } from "./vault-settings.js";
import { type Deadline, TransitCalls } from "./vault-transit.js";

/** Provider name: the key-id prefix and the registry name. */
export const name = "vault";

/** How a VaultTransitProvider is built. */
export interface VaultTransitProviderOptions {
  /** `https://<vault>/v1/<mount>/keys/<name>[?namespace=<ns>]`. */
  keyRef: string;
  /** Where the auth settings, the CA file and the token are read from (see README). */
  environment: NodeJS.ProcessEnv;
  /** Address override (a Vault Agent or Proxy listener, another route to the same cluster). */
  endpoint?: string | undefined;
  /** Deadline of one provider call, retries and any login included. Default 10 s. */
  timeoutMs?: number | undefined;
  /** Attempts per call on throttling and transient failures (1 = no retry). Default 3. */
  maxAttempts?: number | undefined;
  /** Called with the class of every failed attempt, retried ones included (metrics). */
  onAttemptFailed?: ((errorClass: ProviderErrorClass) => void) | undefined;
}

// A wrapped 32-byte key is about 90 characters; anything near this bound is not one.
const MAX_WRAPPED_BYTES = 1024;
const WRAPPED = /^vault:v([1-9]\d{0,9}):([A-Za-z0-9+/]+={0,2})$/;
const HEALTH_CONTEXT = "kms-envelope/v1/health-probe";

/**
 * The `vault` custody provider (HashiCorp Vault and OpenBao Transit, CLOUD-PROTOCOLS.md §B.4):
 * the master key is stored as the Transit ciphertext (`vault:v<N>:…`) of a named key. Each wrap
 * carries `kms-envelope/v1/master-key:<key id>` as associated data (AEAD keys) and as context
 * (derived keys), so a wrapped key only unwraps under the key id it was made for. Tokens come
 * from token, AppRole or Kubernetes auth and are renewed or replaced without restarts
 * (VaultSession); 403s are diagnosed down to the policy line to add.
 */
export class VaultTransitProvider implements CustodyProvider {
  readonly name = name;
  readonly #key: VaultKeyReference;
  /** Where requests go: the key reference's address, or the endpoint override. */
  readonly #address: string;
  readonly #http: VaultHttp;
  readonly #session: VaultSession;
  readonly #calls: TransitCalls;
  #closed = false;

  constructor(options: VaultTransitProviderOptions) {
    this.#key = parseVaultKeyRef(options.keyRef);
    const timeoutMs = integerOption(name, "timeoutMs", options.timeoutMs ?? 10_000, 1, 300_000);
    const maxAttempts = integerOption(name, "maxAttempts", options.maxAttempts ?? 3, 1, 10);
    const settings = readVaultSettings(options.environment);
    this.#address =
      options.endpoint === undefined ? this.#key.address : checkEndpoint(options.endpoint);
    this.#http = new VaultHttp(this.#address, { ca: settings.ca, serverName: settings.serverName });
    this.#session = new VaultSession({
      http: this.#http,
      settings,
      keyNamespace: this.#key.namespace,
      timeoutMs,
    });
    this.#calls = new TransitCalls({
      http: this.#http,
      session: this.#session,
      facts: { key: this.#key, address: this.#address },
      timeoutMs,
      maxAttempts,
      onAttemptFailed: options.onAttemptFailed,
    });
  }

  describe(): ProviderKeyDescription {
    return { provider: this.name, keyRef: this.#key.keyRef };
  }

  async wrapKey(key: Uint8Array, context: WrapContext, signal?: AbortSignal): Promise<Uint8Array> {
    requireKeyToWrap(this.name, key, MASTER_KEY_BYTES);
    const ciphertext = await this.#encrypt(key, bindingFor(context), this.#deadline(signal));
    return Buffer.from(ciphertext, "utf8");
  }

  async unwrapKey(
    wrapped: Uint8Array,
    context: WrapContext,
    signal?: AbortSignal,
  ): Promise<Uint8Array> {
    requireWrappedKey("Vault Transit", context.keyId, wrapped, MAX_WRAPPED_BYTES);
    const ciphertext = wrappedCiphertext(wrapped);
    if (ciphertext === undefined) {
      throw new ProviderError(
        "corrupt",
        `the wrapped key for ${context.keyId} is not a Vault Transit ciphertext (vault:v<N>:<base64>): restore the keyring entry from a backup`,
      );
    }
    const plaintext = await this.#decrypt(ciphertext, bindingFor(context), this.#deadline(signal));
    if (plaintext.length !== MASTER_KEY_BYTES) {
      // Only the length is reported: the bytes themselves are secret.
      const length = plaintext.length;
      wipe(plaintext);
      throw new ProviderError(
        "corrupt",
        `Vault decrypted the wrapped key for ${context.keyId} to ${length} bytes, not a ${MASTER_KEY_BYTES}-byte master key: the keyring entry is not a kms-envelope master key; restore it from a backup`,
      );
    }
    return plaintext;
  }

  /**
   * A real round trip: a random probe encrypted and decrypted under the key, within one
   * deadline. It proves what serving needs end to end — reachable, unsealed, a valid token,
   * update on both Transit paths, the key present and usable — at the cost of two small calls.
   */
  async checkHealth(signal?: AbortSignal): Promise<void> {
    const deadline = this.#deadline(signal);
    const probe = randomBytes(MASTER_KEY_BYTES);
    let opened: Uint8Array | undefined;
    try {
      const ciphertext = await this.#encrypt(probe, HEALTH_CONTEXT, deadline);
      opened = await this.#decrypt(ciphertext, HEALTH_CONTEXT, deadline);
      if (opened.length !== probe.length || !timingSafeEqual(opened, probe)) {
        throw new ProviderError(
          "corrupt",
          `Vault decrypted the health probe under ${this.#key.keyRef} to other bytes than it encrypted: check what answers at ${this.#address}`,
        );
      }
    } finally {
      wipe(probe, opened);
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#session.close();
    this.#http.close();
  }

  async #encrypt(plaintext: Uint8Array, binding: string, deadline: Deadline): Promise<string> {
    const encoded = Buffer.from(binding).toString("base64");
    const copy = Buffer.from(plaintext);
    const payload = {
      plaintext: copy.toString("base64"),
      associated_data: encoded,
      context: encoded,
    };
    // JSON wants the key as a base64 string, which cannot be wiped; the byte copy can.
    wipe(copy);
    const body = await this.#calls.call("encrypt", payload, deadline);
    const ciphertext = (body.data as { ciphertext?: unknown } | undefined)?.ciphertext;
    if (typeof ciphertext !== "string" || !WRAPPED.test(ciphertext)) {
      throw new ProviderError(
        "corrupt",
        `Vault Transit encrypt with ${this.#key.keyRef} returned no vault:v<N>: ciphertext: check what answers at ${this.#address}`,
      );
    }
    return ciphertext;
  }

  async #decrypt(ciphertext: string, binding: string, deadline: Deadline): Promise<Uint8Array> {
    const encoded = Buffer.from(binding).toString("base64");
    const body = await this.#calls.call(
      "decrypt",
      { ciphertext, associated_data: encoded, context: encoded },
      deadline,
      ciphertext,
    );
    const plaintext = (body.data as { plaintext?: unknown } | undefined)?.plaintext;
    if (typeof plaintext !== "string") {
      throw new ProviderError(
        "corrupt",
        `Vault Transit decrypt with ${this.#key.keyRef} returned no plaintext: check what answers at ${this.#address}`,
      );
    }
    return Buffer.from(plaintext, "base64");
  }

  #deadline(signal: AbortSignal | undefined): Deadline {
    if (this.#closed)
      throw new ProviderError("other", `the vault provider for ${this.#key.keyRef} is closed`);
    return this.#calls.deadline(signal);
  }
}

/** Registry entry point (providers/registry.ts): one provider for one key reference. */
export function createProvider(
  keyRef: string,
  options: {
    timeoutMs: number;
    maxAttempts: number;
    endpoint?: string | undefined;
    environment: NodeJS.ProcessEnv;
    onAttemptFailed?: ((errorClass: ProviderErrorClass) => void) | undefined;
  },
): VaultTransitProvider {
  return new VaultTransitProvider({
    keyRef,
    environment: options.environment,
    endpoint: options.endpoint,
    timeoutMs: options.timeoutMs,
    maxAttempts: options.maxAttempts,
    onAttemptFailed: options.onAttemptFailed,
  });
}

/** What binds a wrapped key to its key id: Transit associated data and derivation context. */
function bindingFor(context: WrapContext): string {
  if (context.keyId === "")
    throw new KmsEnvelopeError("INVALID_REQUEST", "a wrap context needs the master key's key id");
  return `kms-envelope/v1/master-key:${context.keyId}`;
}

// The stored form is the Transit ciphertext itself, checked strictly before it is sent: Go's
// base64 decoder ignores stray trailing bits, so a flipped last character could otherwise
// decrypt to the same key instead of being reported as damage.
function wrappedCiphertext(wrapped: Uint8Array): string | undefined {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(wrapped);
  } catch {
    return undefined;
  }
  const match = WRAPPED.exec(text);
  const encoded = match?.[2];
  if (encoded === undefined || encoded.length % 4 !== 0) return undefined;
  return Buffer.from(encoded, "base64").toString("base64") === encoded ? text : undefined;
}

function checkEndpoint(endpoint: string): string {
  let url: URL | undefined;
  try {
    url = new URL(endpoint);
  } catch {
    url = undefined;
  }
  const plainAway = url?.protocol === "http:" && !isLoopback(url.hostname);
  if (url === undefined || (url.protocol !== "https:" && url.protocol !== "http:") || plainAway) {
    throw new ConfigError(
      "vault endpoint",
      `${JSON.stringify(endpoint)} is not an https URL${plainAway ? " (plain http only to a loopback address)" : ""}`,
      "give one such as https://vault.internal:8200 or http://127.0.0.1:8100 (a local Vault Agent)",
    );
  }
  return `${url.origin}${url.pathname.replace(/\/+$/, "")}`;
}
