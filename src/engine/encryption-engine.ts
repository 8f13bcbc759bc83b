import { loadSecretbox } from "../crypto/secretbox.js";
import { providersFor } from "./config/resource-lookup.js";
import type { EncryptionConfiguration, ProviderConfig } from "./config/types.js";
import {
  type EngineMetrics,
  MeteredTransformer,
  type ObservedKmsProvider,
} from "./engine-metrics.js";
import { KmsV1Envelope } from "./kms/kms-v1-envelope.js";
import { KmsV2Envelope, type KmsV2Timing } from "./kms/kms-v2-envelope.js";
import { AesCbcTransformer } from "./transformers/aes-cbc.js";
import { AesGcmTransformer } from "./transformers/aes-gcm.js";
import { IdentityTransformer } from "./transformers/identity.js";
import {
  type PrefixedTransformer,
  PrefixTransformers,
} from "./transformers/prefix-transformers.js";
import { SecretboxTransformer } from "./transformers/secretbox.js";
import type { KeyedTransformer, Read, Stored, Transformer } from "./transformers/transformer.js";

export interface EngineOptions {
  /** kube-apiserver's KMS v2 timing by default; tests shorten it. */
  readonly kmsV2Timing?: KmsV2Timing;
  /** Where to report transformations, plugin calls, provider health and cache sizes. */
  readonly metrics?: EngineMetrics;
}

/**
 * What the field layer and other callers need of an engine: the transformer for a resource
 * (looked up on every use, so a reloaded configuration takes effect at once) and close().
 */
export interface ResourceTransformers {
  transformerFor(resource: string): Transformer;
  health(): KmsProviderHealth[];
  close(): void;
}

/** Health of one kms provider, as kube-apiserver's `kms-provider-<i>` readyz check sees it. */
export interface KmsProviderHealth {
  readonly name: string;
  readonly apiVersion: "v1" | "v2";
  readonly ok: boolean;
  readonly detail: string;
}

const IDENTITY = new IdentityTransformer();

type KmsConfig = Extract<ProviderConfig, { type: "kms" }>;

interface KmsProvider {
  readonly config: KmsConfig;
  readonly envelope: KmsV1Envelope | KmsV2Envelope;
  readonly observed: ObservedKmsProvider;
}

/** The provider label of metrics and writers: "identity", "aesgcm", "kms:v2:<name>" … */
function providerLabel(provider: ProviderConfig): string {
  return provider.type === "kms" ? `kms:${provider.apiVersion}:${provider.name}` : provider.type;
}

/** One plugin connection per distinct kms provider, however many rules list it. */
function sameKms(a: KmsConfig, b: KmsConfig): boolean {
  return a.apiVersion === b.apiVersion && a.name === b.name && a.endpoint === b.endpoint;
}

function text(value: string): Uint8Array {
  return Buffer.from(value, "utf8");
}

function keyedProvider(
  provider: Extract<ProviderConfig, { keys: unknown }>,
  created: KeyedTransformer[],
): PrefixedTransformer {
  const keys = provider.keys.map((key) => {
    const writer = { provider: provider.type, keyId: key.name };
    const transformer =
      provider.type === "aesgcm"
        ? new AesGcmTransformer(key.secret, writer)
        : provider.type === "aescbc"
          ? new AesCbcTransformer(key.secret, writer)
          : new SecretboxTransformer(key.secret, writer);
    created.push(transformer);
    return { prefix: text(`${key.name}:`), transformer };
  });
  return {
    prefix: text(`k8s:enc:${provider.type}:v1:`),
    transformer: new PrefixTransformers(keys),
  };
}

/**
 * Kubernetes' EncryptionConfiguration in process: per resource, the provider list of the
 * first matching rule (exact, `*.group`, `*.*`, else identity); the first provider writes and
 * every provider with a matching prefix may read, reporting stale reads. Bytes are exactly
 * kube-apiserver's, so values move freely between the engine, the apiserver and etcd.
 */
export class EncryptionEngine implements ResourceTransformers {
  readonly #config: EncryptionConfiguration;
  readonly #kms: readonly KmsProvider[];
  readonly #byProviders = new Map<readonly ProviderConfig[], Transformer>();
  /** Every key copy this engine made, zeroed by close(). */
  readonly #keyed: KeyedTransformer[] = [];
  readonly #metrics: EngineMetrics | undefined;

  private constructor(
    config: EncryptionConfiguration,
    kms: readonly KmsProvider[],
    metrics: EngineMetrics | undefined,
  ) {
    this.#config = config;
    this.#kms = kms;
    this.#metrics = metrics;
  }

  /**
   * Starts every kms provider (each v2 provider runs its first Status check). A plugin that
   * is down does not fail the start: like kube-apiserver, its resources fail to read and
   * write until a later check succeeds (see health()).
   */
  static async start(
    config: EncryptionConfiguration,
    options: EngineOptions = {},
  ): Promise<EncryptionEngine> {
    await loadSecretbox();
    const kms: KmsProvider[] = [];
    const { metrics } = options;
    for (const rule of config.rules)
      for (const provider of rule.providers) {
        if (provider.type !== "kms" || kms.some((known) => sameKms(known.config, provider)))
          continue;
        const label = providerLabel(provider);
        const observe =
          metrics === undefined
            ? undefined
            : (method: string, code: string, seconds: number) =>
                metrics.kmsCall(label, method, code, seconds);
        const envelope =
          provider.apiVersion === "v2"
            ? await KmsV2Envelope.start({ ...provider, timing: options.kmsV2Timing, observe })
            : new KmsV1Envelope({ ...provider, observe });
        const observed: ObservedKmsProvider = {
          provider: label,
          healthy: () => !(envelope instanceof KmsV2Envelope) || envelope.health().ok,
          cachedSources: () => envelope.cachedSources,
        };
        metrics?.track(observed);
        kms.push({ config: provider, envelope, observed });
      }
    return new EncryptionEngine(config, kms, metrics);
  }

  /** The transformer for a resource in `resource.group` form (`secrets`, `users.obot.obot.ai`). */
  transformerFor(resource: string): Transformer {
    const providers = providersFor(this.#config, resource);
    let transformer = this.#byProviders.get(providers);
    if (transformer === undefined) {
      transformer = new PrefixTransformers(providers.map((provider) => this.#entry(provider)));
      if (this.#metrics !== undefined)
        transformer = new MeteredTransformer(
          transformer,
          this.#metrics,
          providerLabel(providers[0] as ProviderConfig),
        );
      this.#byProviders.set(providers, transformer);
    }
    return transformer;
  }

  encrypt(resource: string, plaintext: Uint8Array, authenticatedData: Uint8Array): Promise<Stored> {
    return this.transformerFor(resource).toStorage(plaintext, authenticatedData);
  }

  decrypt(resource: string, data: Uint8Array, authenticatedData: Uint8Array): Promise<Read> {
    return this.transformerFor(resource).fromStorage(data, authenticatedData);
  }

  #entry(provider: ProviderConfig): PrefixedTransformer {
    if (provider.type === "identity") return { prefix: new Uint8Array(0), transformer: IDENTITY };
    if (provider.type !== "kms") return keyedProvider(provider, this.#keyed);
    const started = this.#kms.find((known) => sameKms(known.config, provider));
    return {
      prefix: text(`k8s:enc:kms:${provider.apiVersion}:${provider.name}:`),
      transformer: (started as KmsProvider).envelope,
    };
  }

  /** Every kms provider in configuration order (the `i` of kube-apiserver's check names). */
  health(): KmsProviderHealth[] {
    return this.#kms.map(({ config, envelope }) => ({
      name: config.name,
      apiVersion: config.apiVersion,
      ...(envelope instanceof KmsV2Envelope ? envelope.health() : { ok: true, detail: "ok" }),
    }));
  }

  /** Runs every kms v2 provider's Status check now (e.g. after a plugin restart). */
  async checkNow(): Promise<void> {
    await Promise.all(
      this.#kms.map(({ envelope }) =>
        envelope instanceof KmsV2Envelope ? envelope.check() : undefined,
      ),
    );
  }

  /** Closes plugin connections, stops the Status timers and zeroes every key; idempotent. */
  close(): void {
    for (const { envelope, observed } of this.#kms) {
      envelope.close();
      this.#metrics?.forget(observed);
    }
    for (const transformer of this.#keyed) transformer.dispose();
  }
}
