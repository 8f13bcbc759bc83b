import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { errorMessage } from "../errors.js";
import {
  type EncryptionConfigurationOptions,
  loadEncryptionConfiguration,
  parseEncryptionConfiguration,
} from "./config/encryption-configuration.js";
import type { EncryptionConfiguration } from "./config/types.js";
import {
  EncryptionEngine,
  type EngineOptions,
  type KmsProviderHealth,
  type ResourceTransformers,
} from "./encryption-engine.js";
import type { Transformer } from "./transformers/transformer.js";

/**
 * Options of {@link ReloadingEngine.start}: the engine's options, the configuration checks
 * (applied to every reload) and the polling.
 */
export interface ReloadOptions extends EngineOptions, EncryptionConfigurationOptions {
  /** How often the file is compared with what is loaded; ms, default 60 000 (kube-apiserver's). */
  readonly pollIntervalMs?: number;
  /** How long new kms providers may take to become healthy; ms, default 10 000. */
  readonly healthWaitMs?: number;
  /**
   * Told about every reload attempt that found a changed or unreadable file (not about
   * `unchanged` polls). Called synchronously; it should not throw.
   */
  readonly onReload?: (outcome: ReloadOutcome) => void;
}

/**
 * What one reload attempt did: `unchanged` (same sha256 as the configuration in use),
 * `reloaded` (the new engine is in use; `hash` is its file's sha256), or `refused` (the file
 * could not be read, did not load, or its kms providers stayed unhealthy; the running
 * configuration stays, `reason` says why without key material, and `hash` is undefined when
 * the file could not be read).
 */
export type ReloadOutcome =
  | { readonly status: "unchanged" }
  | { readonly status: "reloaded"; readonly hash: string }
  | { readonly status: "refused"; readonly hash: string | undefined; readonly reason: string };

const HEALTH_RECHECK_MS = 200;

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/**
 * How long a replaced engine stays open for calls already using it: kube-apiserver waits twice
 * the sum of its kms timeouts (v1 timeouts counted double) before closing old transformers.
 */
function drainMs(config: EncryptionConfiguration): number {
  let total = 0;
  for (const rule of config.rules)
    for (const provider of rule.providers)
      if (provider.type === "kms")
        total += provider.apiVersion === "v1" ? 2 * provider.timeoutMs : provider.timeoutMs;
  return 2 * total;
}

/**
 * An engine that follows its EncryptionConfiguration file, as kube-apiserver does with
 * --encryption-provider-config-automatic-reload: the file is polled and compared by sha256; a
 * changed file is loaded into a new engine, which replaces the old one only once every kms
 * provider in it is healthy. A file that does not load, or providers that stay unhealthy, are
 * refused and the running configuration stays. Keys rotate without restarting the application.
 */
export class ReloadingEngine implements ResourceTransformers {
  readonly #path: string;
  readonly #options: ReloadOptions;
  #engine: EncryptionEngine;
  #config: EncryptionConfiguration;
  #timer: NodeJS.Timeout | undefined;
  #reload: Promise<ReloadOutcome> | undefined;
  readonly #retiring = new Set<NodeJS.Timeout>();
  #closed = false;

  private constructor(
    path: string,
    options: ReloadOptions,
    engine: EncryptionEngine,
    config: EncryptionConfiguration,
  ) {
    this.#path = path;
    this.#options = options;
    this.#engine = engine;
    this.#config = config;
    this.#schedule();
  }

  /**
   * Loads the file (a bad file fails the start, as it fails kube-apiserver's) and starts polling.
   * The poll timer does not keep the process alive.
   *
   * @param path - The EncryptionConfiguration file; re-read at every poll.
   * @param options - Engine options, configuration checks and polling.
   * @throws {@link InvalidEncryptionConfigurationError} (`INVALID_CONFIG`) when the file does not
   * load. Unhealthy kms plugins do not fail the start (see {@link EncryptionEngine.start}).
   */
  static async start(path: string, options: ReloadOptions = {}): Promise<ReloadingEngine> {
    const config = await loadEncryptionConfiguration(path, options);
    const engine = await EncryptionEngine.start(config, options);
    return new ReloadingEngine(path, options, engine, config);
  }

  /** sha256 hex of the file bytes of the configuration in use. */
  get hash(): string {
    return this.#config.hash;
  }

  /**
   * The current engine's transformer for a resource (see {@link EncryptionEngine.transformerFor}).
   * Look it up for every use: a transformer kept across a reload keeps working with the old
   * configuration only until the replaced engine is closed.
   */
  transformerFor(resource: string): Transformer {
    return this.#engine.transformerFor(resource);
  }

  /** Health of the current engine's kms providers (see {@link EncryptionEngine.health}). */
  health(): KmsProviderHealth[] {
    return this.#engine.health();
  }

  /**
   * Compares the file now and reloads it if it changed (concurrent callers share one attempt).
   * A replaced engine is closed after twice the sum of its kms timeouts (v1 counted double), so
   * calls already using it can finish.
   *
   * @returns What the attempt did. Failures are `refused` outcomes, not rejections; the promise
   * rejects only if `onReload` throws.
   */
  reloadNow(): Promise<ReloadOutcome> {
    if (this.#reload === undefined) {
      this.#reload = this.#attempt().finally(() => {
        this.#reload = undefined;
      });
    }
    return this.#reload;
  }

  /**
   * Stops polling and closes the current engine and any replaced engine still draining;
   * idempotent. A reload in flight is refused and its engine closed.
   */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    for (const timer of this.#retiring) clearTimeout(timer);
    this.#retiring.clear();
    this.#engine.close();
  }

  #schedule(): void {
    if (this.#closed) return;
    this.#timer = setTimeout(() => {
      void this.reloadNow().finally(() => this.#schedule());
    }, this.#options.pollIntervalMs ?? 60_000);
    this.#timer.unref();
  }

  async #attempt(): Promise<ReloadOutcome> {
    let bytes: Buffer;
    try {
      bytes = await readFile(this.#path);
    } catch (error) {
      return this.#tell({
        status: "refused",
        hash: undefined,
        reason: `cannot read ${this.#path}: ${errorMessage(error)}`,
      });
    }
    const hash = sha256(bytes);
    if (hash === this.#config.hash) return { status: "unchanged" };
    let config: EncryptionConfiguration;
    let engine: EncryptionEngine;
    try {
      config = parseEncryptionConfiguration(bytes, { ...this.#options, source: this.#path });
      engine = await EncryptionEngine.start(config, this.#options);
    } catch (error) {
      return this.#tell({ status: "refused", hash, reason: errorMessage(error) });
    }
    const unhealthy = await this.#awaitHealthy(engine);
    if (unhealthy !== undefined || this.#closed) {
      engine.close();
      return this.#tell({ status: "refused", hash, reason: unhealthy ?? "the engine was closed" });
    }
    const previous = this.#engine;
    const previousConfig = this.#config;
    this.#engine = engine;
    this.#config = config;
    const retire = setTimeout(() => {
      this.#retiring.delete(retire);
      previous.close();
    }, drainMs(previousConfig));
    retire.unref();
    this.#retiring.add(retire);
    return this.#tell({ status: "reloaded", hash });
  }

  /** Undefined once every kms provider is healthy, else why not after healthWaitMs. */
  async #awaitHealthy(engine: EncryptionEngine): Promise<string | undefined> {
    const deadline = Date.now() + (this.#options.healthWaitMs ?? 10_000);
    for (;;) {
      const sick = engine.health().filter((provider) => !provider.ok);
      if (sick.length === 0) return undefined;
      if (Date.now() >= deadline || this.#closed)
        return sick
          .map((provider) => `kms provider ${provider.name}: ${provider.detail}`)
          .join("; ");
      await new Promise((resolve) => setTimeout(resolve, HEALTH_RECHECK_MS));
      await engine.checkNow();
    }
  }

  #tell(outcome: ReloadOutcome): ReloadOutcome {
    this.#options.onReload?.(outcome);
    return outcome;
  }
}
