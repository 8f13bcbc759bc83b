import { randomBytes } from "node:crypto";
import { deriveWorkspaceKey } from "../src/crypto/derivation.js";
import { generateMasterKey } from "../src/crypto/master-key.js";
import { open, seal } from "../src/crypto/sealed.js";
import { loadSecretbox } from "../src/crypto/secretbox.js";
import { wipe } from "../src/crypto/wipe.js";
import {
  type DirectKeyProvider,
  ProviderError,
  type ProviderErrorClass,
  type ProviderKeyDescription,
  type WrapContext,
} from "./types.js";

/** One scripted answer: succeed, or fail with a provider error of the given class. */
type FakeOutcome = "ok" | ProviderErrorClass;

/** Provider operations the fake counts. */
type FakeOperation = "wrapKey" | "unwrapKey" | "checkHealth";

/**
 * A scripted provider for tests: answers come from a queue of outcomes (then a standing
 * default), and every call is counted, so tests can drive revocation, throttling and recovery
 * deterministically and assert how many provider calls were made.
 */
export class FakeProvider implements DirectKeyProvider {
  readonly name: string;
  readonly calls: Record<FakeOperation, number> = { wrapKey: 0, unwrapKey: 0, checkHealth: 0 };
  readonly #masterKeys: Uint8Array[];
  readonly #keyEncryptionKey = randomBytes(32);
  #closed = false;
  readonly #script: FakeOutcome[] = [];
  #standing: FakeOutcome = "ok";
  #delayMs = 0;

  constructor(options: { name?: string; masterKeys?: Uint8Array[] } = {}) {
    this.name = options.name ?? "fake";
    this.#masterKeys = options.masterKeys ?? [generateMasterKey()];
  }

  /** Queues outcomes for the next calls, in order, before the standing outcome applies. */
  script(...outcomes: FakeOutcome[]): this {
    this.#script.push(...outcomes);
    return this;
  }

  /** Sets the outcome of every call once the script is used up. */
  setStanding(outcome: FakeOutcome): this {
    this.#standing = outcome;
    return this;
  }

  /** Makes every call wait this long first (honouring the abort signal). */
  setDelay(milliseconds: number): this {
    this.#delayMs = milliseconds;
    return this;
  }

  describe(): ProviderKeyDescription {
    return { provider: this.name, keyRef: "fake:scripted" };
  }

  loadMasterKeys(): Uint8Array[] {
    return this.#masterKeys.map((key) => Uint8Array.from(key));
  }

  async wrapKey(key: Uint8Array, context: WrapContext, signal?: AbortSignal): Promise<Uint8Array> {
    await loadSecretbox();
    await this.#answer("wrapKey", signal);
    const wrapKey = deriveWorkspaceKey(this.#keyEncryptionKey, context.keyId);
    try {
      return seal(wrapKey, Buffer.from("fake-wrap"), key);
    } finally {
      wipe(wrapKey);
    }
  }

  async unwrapKey(
    wrapped: Uint8Array,
    context: WrapContext,
    signal?: AbortSignal,
  ): Promise<Uint8Array> {
    await loadSecretbox();
    await this.#answer("unwrapKey", signal);
    const wrapKey = deriveWorkspaceKey(this.#keyEncryptionKey, context.keyId);
    try {
      return open(wrapKey, Buffer.from("fake-wrap"), wrapped);
    } catch (error) {
      throw new ProviderError("corrupt", "fake: wrapped key failed authentication", {
        cause: error,
      });
    } finally {
      wipe(wrapKey);
    }
  }

  async checkHealth(signal?: AbortSignal): Promise<void> {
    await this.#answer("checkHealth", signal);
  }

  async close(): Promise<void> {
    this.#closed = true;
    wipe(this.#keyEncryptionKey, ...this.#masterKeys);
  }

  async #answer(operation: FakeOperation, signal?: AbortSignal): Promise<void> {
    this.calls[operation] += 1;
    // Like a real provider, a closed fake refuses rather than using its wiped keys.
    if (this.#closed) throw new ProviderError("other", "fake: the provider is closed");
    if (this.#delayMs > 0) await abortableDelay(this.#delayMs, signal);
    const outcome = this.#script.shift() ?? this.#standing;
    if (outcome !== "ok") throw new ProviderError(outcome, `fake: scripted ${outcome} failure`);
  }
}

function abortableDelay(milliseconds: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, milliseconds);
    signal?.addEventListener(
      "abort",
      () => {
        clearTimeout(timer);
        reject(new ProviderError("other", "fake: call timed out"));
      },
      { once: true },
    );
  });
}
