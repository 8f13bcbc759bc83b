import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { KeyIdMetrics } from "../ops/key-id-metrics.js";
import { METRIC_PREFIX } from "../ops/metrics.js";
import type { Read, Stored, Transformer, Writer } from "./transformers/transformer.js";

/** What the metrics read from a running kms provider. */
export interface ObservedKmsProvider {
  /** The provider label, `kms:v1:<name>` or `kms:v2:<name>`. */
  readonly provider: string;
  /** Whether the provider's plugin answered its last health check. */
  healthy(): boolean;
  /** Decrypted DEK sources (v2) or DEKs (v1) currently cached. */
  cachedSources(): number;
}

const KMS_V2_PREFIX = "kms:v2:";

// Plugin calls go over a local socket to a plugin that may call a cloud KMS: 1 ms to 10 s.
const KMS_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * The engine's Prometheus metrics, in the spirit of kube-apiserver's envelope metrics, with
 * labels from bounded sets only: provider (`aesgcm`, `kms:v2:<name>` …), method, gRPC code and
 * result. Create one per registry and pass it to every engine that should report into it
 * (a reloading engine keeps it across reloads). No key or plaintext is ever a label, and key
 * ids only hashed.
 *
 * @remarks
 * Metrics: `kms_envelope_engine_transformations_total` (operation, provider, result `ok`,
 * `stale` or `error`), `kms_envelope_engine_kms_calls_total` (provider, method, code),
 * `kms_envelope_engine_kms_call_duration_seconds` (provider, method),
 * `kms_envelope_engine_kms_provider_healthy` and `kms_envelope_engine_dek_source_cache_size`
 * (provider). For kms v2 providers also kube-apiserver's own key-id families, with its names
 * and meaning: `apiserver_envelope_encryption_key_id_hash_total` and
 * `apiserver_envelope_encryption_key_id_hash_last_timestamp_seconds` (transformation_type,
 * provider_name, key_id_hash) per value written or read, and
 * `apiserver_envelope_encryption_key_id_hash_status_last_timestamp_seconds` (provider_name,
 * key_id_hash) per Status check; provider_name is the provider's name in the configuration and
 * key_id_hash `sha256:` and the hex SHA-256 of the key id, as kube-apiserver labels it (its
 * `apiserver_id_hash` label is left out). The 100 most recent label sets of each are kept.
 */
export class EngineMetrics {
  readonly #transformations: Counter<"operation" | "provider" | "result">;
  readonly #kmsCalls: Counter<"provider" | "method" | "code">;
  readonly #kmsLatency: Histogram<"provider" | "method">;
  readonly #providers = new Set<ObservedKmsProvider>();
  readonly #keyIds: KeyIdMetrics;
  // prom-client hashes label sets on every update; the per-field path uses bound children.
  readonly #bound = new Map<string, Counter.Internal>();

  /**
   * Registers the engine's metrics (`kms_envelope_engine_*`) in `registry`.
   *
   * @param registry - A prom-client registry; metric names must not already be registered
   * there (prom-client throws), so create one EngineMetrics per registry.
   */
  constructor(registry: Registry) {
    const registers = [registry];
    const providers = this.#providers;
    this.#keyIds = new KeyIdMetrics(registry);
    this.#transformations = new Counter({
      name: `${METRIC_PREFIX}engine_transformations_total`,
      help: "Values transformed by the engine, by operation (to_storage, from_storage), the provider that wrote or read them, and result (ok, stale, error).",
      labelNames: ["operation", "provider", "result"],
      registers,
    });
    this.#kmsCalls = new Counter({
      name: `${METRIC_PREFIX}engine_kms_calls_total`,
      help: "Calls to KMS plugins, by provider, gRPC method and gRPC status code name.",
      labelNames: ["provider", "method", "code"],
      registers,
    });
    this.#kmsLatency = new Histogram({
      name: `${METRIC_PREFIX}engine_kms_call_duration_seconds`,
      help: "Duration of calls to KMS plugins, by provider and gRPC method.",
      labelNames: ["provider", "method"],
      buckets: KMS_BUCKETS,
      registers,
    });
    new Gauge({
      name: `${METRIC_PREFIX}engine_kms_provider_healthy`,
      help: "1 when the kms provider's last Status check passed (v1 providers: always 1).",
      labelNames: ["provider"],
      registers,
      collect() {
        this.reset();
        for (const provider of providers)
          this.labels(provider.provider).set(provider.healthy() ? 1 : 0);
      },
    });
    new Gauge({
      name: `${METRIC_PREFIX}engine_dek_source_cache_size`,
      help: "Decrypted DEK sources (kms v2) or DEKs (kms v1) held in the provider's cache.",
      labelNames: ["provider"],
      registers,
      collect() {
        this.reset();
        for (const provider of providers)
          this.labels(provider.provider).set(provider.cachedSources());
      },
    });
  }

  /**
   * Reports a provider's health and cache size until `forget` is called (engine close).
   * @internal Called by the engine; applications do not call it.
   */
  track(provider: ObservedKmsProvider): void {
    this.#providers.add(provider);
  }

  /** Stops reporting a provider passed to `track`. @internal Called by the engine on close. */
  forget(provider: ObservedKmsProvider): void {
    this.#providers.delete(provider);
  }

  /**
   * Counts one finished plugin call and records its duration.
   * @internal Called by the engine.
   *
   * @param provider - Provider label, `kms:v1:<name>` or `kms:v2:<name>`.
   * @param method - gRPC method (`Status`, `Encrypt`, `Decrypt`, `Version`).
   * @param code - gRPC status code name (`OK`, `UNAVAILABLE`, …).
   * @param seconds - Duration of the call.
   */
  kmsCall(provider: string, method: string, code: string, seconds: number): void {
    this.#kmsCalls.labels(provider, method, code).inc();
    this.#kmsLatency.labels(provider, method).observe(seconds);
  }

  /**
   * Notes the key id a kms v2 provider's Status check reported.
   * @internal Called by the engine.
   *
   * @param provider - The provider's name in the configuration.
   * @param keyId - The key id, hashed before it becomes a label.
   */
  kmsStatusKeyId(provider: string, keyId: string): void {
    this.#keyIds.recordStatus(provider, keyId);
  }

  /**
   * Counts one value a kms v2 provider wrote or read under its writer's key id.
   * @internal Called by the engine.
   */
  kmsKeyIdUse(operation: "to_storage" | "from_storage", writer: Writer): void {
    if (writer.provider.startsWith(KMS_V2_PREFIX))
      this.#keyIds.recordUse(operation, writer.provider.slice(KMS_V2_PREFIX.length), writer.keyId);
  }

  /**
   * Counts one transformed value.
   * @internal Called by the engine.
   *
   * @param operation - `to_storage` (encrypt) or `from_storage` (decrypt).
   * @param provider - Provider label of the writer (`aesgcm`, `kms:v2:<name>`); for failed reads
   * `unknown`.
   * @param result - `ok`, `stale` or `error`.
   */
  transformation(operation: "to_storage" | "from_storage", provider: string, result: string): void {
    const key = `${operation}\0${provider}\0${result}`;
    let child = this.#bound.get(key);
    if (child === undefined) {
      child = this.#transformations.labels(operation, provider, result);
      this.#bound.set(key, child);
    }
    child.inc();
  }
}

/** Counts what a resource's transformer does; failures are labelled with the would-be writer. */
export class MeteredTransformer implements Transformer {
  readonly #inner: Transformer;
  readonly #metrics: EngineMetrics;
  readonly #firstProvider: string;

  constructor(inner: Transformer, metrics: EngineMetrics, firstProvider: string) {
    this.#inner = inner;
    this.#metrics = metrics;
    this.#firstProvider = firstProvider;
  }

  async toStorage(plaintext: Uint8Array, authenticatedData: Uint8Array): Promise<Stored> {
    try {
      return this.#wrote(await this.#inner.toStorage(plaintext, authenticatedData));
    } catch (error) {
      throw this.#writeFailed(error);
    }
  }

  toStorageSync(plaintext: Uint8Array, authenticatedData: Uint8Array): Stored | undefined {
    try {
      const stored = this.#inner.toStorageSync?.(plaintext, authenticatedData);
      return stored && this.#wrote(stored);
    } catch (error) {
      throw this.#writeFailed(error);
    }
  }

  async fromStorage(data: Uint8Array, authenticatedData: Uint8Array): Promise<Read> {
    try {
      return this.#read(await this.#inner.fromStorage(data, authenticatedData));
    } catch (error) {
      throw this.#readFailed(error);
    }
  }

  fromStorageSync(data: Uint8Array, authenticatedData: Uint8Array): Read | undefined {
    try {
      const read = this.#inner.fromStorageSync?.(data, authenticatedData);
      return read && this.#read(read);
    } catch (error) {
      throw this.#readFailed(error);
    }
  }

  #wrote(stored: Stored): Stored {
    this.#metrics.transformation("to_storage", stored.writer.provider, "ok");
    this.#metrics.kmsKeyIdUse("to_storage", stored.writer);
    return stored;
  }

  #writeFailed(error: unknown): unknown {
    this.#metrics.transformation("to_storage", this.#firstProvider, "error");
    return error;
  }

  #read(read: Read): Read {
    this.#metrics.transformation("from_storage", read.writer.provider, read.stale ? "stale" : "ok");
    this.#metrics.kmsKeyIdUse("from_storage", read.writer);
    return read;
  }

  #readFailed(error: unknown): unknown {
    // Which provider failed is not known for certain (no prefix may have matched).
    this.#metrics.transformation("from_storage", "unknown", "error");
    return error;
  }

  currentWriter(): Writer {
    return this.#inner.currentWriter();
  }
}
