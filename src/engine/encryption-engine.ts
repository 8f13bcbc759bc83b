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

/** Options of {@link EncryptionEngine.start}; all optional. */
export interface EngineOptions {
  /** Timing of every kms v2 provider; kube-apiserver's by default (tests shorten it). */
  readonly kmsV2Timing?: KmsV2Timing;
  /** Where to report transformations, plugin calls, provider health and cache sizes (none). */
  readonly metrics?: EngineMetrics;
}

/**
 * What the field layer and other callers need of an engine: the transformer for a resource
 * (looked up on every use, so a reloaded configuration takes effect at once), kms provider
 * health, and close(). {@link EncryptionEngine} and {@link ReloadingEngine} implement it.
 */
export interface ResourceTransformers {
  /**
   * The transformer for a resource in `resource.group` form (`secrets`, `users.obot.obot.ai`).
   * Never throws: a resource no rule matches gets identity (no encryption), as in Kubernetes.
   */
  transformerFor(resource: string): Transformer;
  /** Health of every kms provider, in configuration order; `[]` when there is none. */
  health(): KmsProviderHealth[];
  /** Closes plugin connections and timers and zeroes the keys held; idempotent. */
  close(): void;
}

/** Health of one kms provider, as kube-apiserver's `kms-provider-<i>` readyz check sees it. */
export interface KmsProviderHealth {
  /** The provider's `name` in the configuration. */
  readonly name: string;
  /** The provider's `apiVersion`. */
  readonly apiVersion: "v1" | "v2";
  /**
   * v2: whether the last Status check passed (false until the first one has). v1 has no
   * health check: always true.
   */
  readonly ok: boolean;
  /** `ok`, or why the last check failed (no key material, no plaintext). */
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
 * matching rules (exact, `*.group`, `*.*`, else identity); the first provider writes and
 * every provider with a matching prefix may read, reporting stale reads. Bytes are exactly
 * kube-apiserver's, so values move freely between the engine, the apiserver and etcd.
 *
 * @remarks
 * Safe for concurrent calls. A kms v2 provider calls its plugin as the apiserver does: Status
 * at start and every minute (10 s after a failure), Encrypt once per start or key-id change,
 * Decrypt once per distinct stored seed (bounded cache); writes keep using the last seed for
 * 3 minutes after the last healthy check, then fail until the plugin is healthy again. Errors
 * never carry keys or plaintext. Call {@link EncryptionEngine.close} when done.
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
   *
   * @param config - A configuration from {@link loadEncryptionConfiguration} or
   * {@link parseEncryptionConfiguration}.
   * @param options - kms v2 timing and metrics.
   * @returns A running engine; close it when done.
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
            ? await KmsV2Envelope.start({
                ...provider,
                timing: options.kmsV2Timing,
                observe,
                observeStatusKeyId: (keyId) => metrics?.kmsStatusKeyId(provider.name, keyId),
              })
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

  /**
   * The transformer for a resource in `resource.group` form (`secrets`, `users.obot.obot.ai`).
   * Never throws: a resource no rule matches gets identity (no encryption), as in Kubernetes.
   */
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

  /**
   * Encrypts a value for storage with the resource's first provider (its first key).
   *
   * @param resource - Group resource choosing the rule (`secrets`, `users.obot.obot.ai`).
   * @param plaintext - The value; not modified, not kept.
   * @param authenticatedData - Where the value is stored (the etcd key, or for fields
   * `<resource>/<field path>/<record id>`); the same bytes must be given to decrypt it.
   * @returns The stored bytes (with their `k8s:enc:` prefix) and who wrote them.
   * @throws `KMS_PLUGIN_FAILED` when a kms provider writes and its plugin is not usable (no
   * healthy Status yet, seed expired, call failed).
   */
  encrypt(resource: string, plaintext: Uint8Array, authenticatedData: Uint8Array): Promise<Stored> {
    return this.transformerFor(resource).toStorage(plaintext, authenticatedData);
  }

  /**
   * Decrypts a stored value with the provider whose prefix it carries.
   *
   * @param resource - Group resource choosing the rule.
   * @param data - The stored bytes.
   * @param authenticatedData - The bytes given when the value was encrypted.
   * @returns The plaintext, who wrote it and whether it is stale.
   * @throws `MALFORMED_CIPHERTEXT` when no provider of the rule wrote it or it is truncated;
   * `DECRYPTION_FAILED` when authentication fails (wrong key, tampered value, other
   * authenticated data for aesgcm and kms; aescbc and secretbox ignore it, as upstream), without
   * saying which; `KMS_PLUGIN_FAILED` when a plugin call fails or the plugin has not yet passed
   * a Status check.
   */
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

  /**
   * Every kms provider in configuration order (the `i` of kube-apiserver's check names), as of
   * its last check; makes no plugin call.
   */
  health(): KmsProviderHealth[] {
    return this.#kms.map(({ config, envelope }) => ({
      name: config.name,
      apiVersion: config.apiVersion,
      ...(envelope instanceof KmsV2Envelope ? envelope.health() : { ok: true, detail: "ok" }),
    }));
  }

  /**
   * Runs every kms v2 provider's Status check now (e.g. after a plugin restart); concurrent
   * callers share one check per provider. Never rejects: failures show in
   * {@link EncryptionEngine.health}.
   */
  async checkNow(): Promise<void> {
    await Promise.all(
      this.#kms.map(({ envelope }) =>
        envelope instanceof KmsV2Envelope ? envelope.check() : undefined,
      ),
    );
  }

  /**
   * Closes plugin connections, stops the Status timers and zeroes every key; idempotent. The
   * engine and its transformers must not be used afterwards.
   */
  close(): void {
    for (const { envelope, observed } of this.#kms) {
      envelope.close();
      this.#metrics?.forget(observed);
    }
    for (const transformer of this.#keyed) transformer.dispose();
  }
}
