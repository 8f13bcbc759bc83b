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

export interface ReloadOptions extends EngineOptions, EncryptionConfigurationOptions {
  /** How often the file is compared with what is loaded (kube-apiserver: 1 min). */
  readonly pollIntervalMs?: number;
  /** How long a new configuration's kms providers may take to become healthy (10 s). */
  readonly healthWaitMs?: number;
  /** Told about every reload attempt that found a changed file. */
  readonly onReload?: (outcome: ReloadOutcome) => void;
}

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

  /** Loads the file (a bad file fails the start, as it fails kube-apiserver's) and starts polling. */
  static async start(path: string, options: ReloadOptions = {}): Promise<ReloadingEngine> {
    const config = await loadEncryptionConfiguration(path, options);
    const engine = await EncryptionEngine.start(config, options);
    return new ReloadingEngine(path, options, engine, config);
  }

  /** sha256 of the configuration in use. */
  get hash(): string {
    return this.#config.hash;
  }

  transformerFor(resource: string): Transformer {
    return this.#engine.transformerFor(resource);
  }

  health(): KmsProviderHealth[] {
    return this.#engine.health();
  }

  /** Compares the file now and reloads it if it changed (concurrent callers share one attempt). */
  reloadNow(): Promise<ReloadOutcome> {
    if (this.#reload === undefined) {
      this.#reload = this.#attempt().finally(() => {
        this.#reload = undefined;
      });
    }
    return this.#reload;
  }

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
