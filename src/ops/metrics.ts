import { totalmem } from "node:os";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import type { ProviderErrorClass } from "../../providers/types.js";
import { KeyIdMetrics, keyIdHash } from "./key-id-metrics.js";

/**
 * Every metric of the daemon's own starts with this, so dashboards survive refactors;
 * kube-apiserver's key-id families (key-id-metrics.ts) keep their upstream names.
 */
export const METRIC_PREFIX = "kms_envelope_";

// Sub-millisecond buckets: the daemon answers from memory, so the interesting range is 50 µs–10 ms.
const LATENCY_BUCKETS = [
  0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1,
];

type CallLabels = "method" | "code";

/** What the field service did with a value: the `operation` label of field_values_total. */
export type FieldOperation = "seal" | "open" | "lookup";

/**
 * What the process may hold before the kernel or the container runtime kills it: the cgroup
 * limit when there is one (Node reports "none" as 2^64), else the machine's memory, so an alert
 * on RSS against it works with and without a container limit.
 */
function memoryLimitBytes(): number {
  const machine = totalmem();
  const constrained = process.constrainedMemory?.() ?? 0;
  return constrained > 0 && constrained < machine ? constrained : machine;
}

/** The daemon's Prometheus metrics; label values come from fixed sets only (bounded cardinality). */
export class DaemonMetrics {
  readonly registry = new Registry();
  /** kube-apiserver's key-id families, for what the KMS v2 API sees (hashed key ids). */
  readonly keyIds = new KeyIdMetrics(this.registry);
  readonly #calls: Counter<CallLabels>;
  readonly #latency: Histogram<"method">;
  readonly #primaryKey: Gauge<"key_id" | "key_id_hash">;
  readonly #keyVersions: Gauge;
  readonly #providerHealthy: Gauge<"provider">;
  readonly #providerSuspended: Gauge<"provider">;
  readonly #providerChecks: Counter<"provider" | "result">;
  readonly #fieldValues: Counter<"operation">;
  readonly #fieldStaleOpens: Counter;
  readonly #keyReloads: Counter<"result">;
  readonly #providerCalls: Counter<"provider" | "operation" | "result">;
  readonly #providerLatency: Histogram<"provider" | "operation">;
  readonly #providerFailedAttempts: Counter<"provider" | "result">;
  readonly #connectionsShed: Counter<"reason">;
  #bufferedBytes: () => number = () => 0;
  #ready: () => boolean = () => false;
  // prom-client hashes label sets on every call; binding children once keeps the hot path cheap.
  // By method, then code: a joined string key would be built and hashed anew on every call.
  readonly #boundCalls = new Map<string, Map<string, Counter.Internal>>();
  readonly #boundLatency = new Map<string, Histogram.Internal<"method">>();

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: METRIC_PREFIX });
    this.#calls = new Counter({
      name: `${METRIC_PREFIX}grpc_requests_total`,
      help: "gRPC calls served, by full method name and gRPC status code name.",
      labelNames: ["method", "code"],
      registers,
    });
    this.#latency = new Histogram({
      name: `${METRIC_PREFIX}grpc_request_duration_seconds`,
      help: "Time from receiving a gRPC call to sending its answer, by full method name.",
      labelNames: ["method"],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.#primaryKey = new Gauge({
      name: `${METRIC_PREFIX}primary_key_info`,
      help: "Always 1; key_id is the current primary master-key version (public), key_id_hash the same id hashed as kube-apiserver's metrics show it.",
      labelNames: ["key_id", "key_id_hash"],
      registers,
    });
    this.#keyVersions = new Gauge({
      name: `${METRIC_PREFIX}key_versions`,
      help: "Master-key versions held in memory (primary plus those kept for decryption).",
      registers,
    });
    this.#providerHealthy = new Gauge({
      name: `${METRIC_PREFIX}provider_healthy`,
      help: "1 when the last custody-provider check succeeded, else 0.",
      labelNames: ["provider"],
      registers,
    });
    this.#providerSuspended = new Gauge({
      name: `${METRIC_PREFIX}provider_suspended`,
      help: "1 when the provider has failed past the grace period and crypto is refused.",
      labelNames: ["provider"],
      registers,
    });
    this.#providerChecks = new Counter({
      name: `${METRIC_PREFIX}provider_checks_total`,
      help: "Custody-provider health checks, by result (ok or the error class).",
      labelNames: ["provider", "result"],
      registers,
    });
    this.#fieldValues = new Counter({
      name: `${METRIC_PREFIX}field_values_total`,
      help: "Field values sealed, opened or turned into lookup tokens by the field service.",
      labelNames: ["operation"],
      registers,
    });
    this.#fieldStaleOpens = new Counter({
      name: `${METRIC_PREFIX}field_stale_opens_total`,
      help: "Field-service Open calls that returned values sealed under an older master-key version: stored data still waits for rewrap.",
      registers,
    });
    this.#providerCalls = new Counter({
      name: `${METRIC_PREFIX}provider_calls_total`,
      help: "Calls to the custody provider's key service, by operation and result (ok or the error class).",
      labelNames: ["provider", "operation", "result"],
      registers,
    });
    this.#providerLatency = new Histogram({
      name: `${METRIC_PREFIX}provider_call_duration_seconds`,
      help: "Duration of custody-provider calls, retries included.",
      labelNames: ["provider", "operation"],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.#providerFailedAttempts = new Counter({
      name: `${METRIC_PREFIX}provider_failed_attempts_total`,
      help: "Failed attempts inside custody-provider calls, retried ones included (throttling, transient failures), by error class.",
      labelNames: ["provider", "result"],
      registers,
    });
    this.#connectionsShed = new Counter({
      name: `${METRIC_PREFIX}connections_shed_total`,
      help: "Client connections closed because --max-connections was reached: the longest-idle one (evicted_idle) or, when none was idle, the new one (max_connections).",
      labelNames: ["reason"],
      registers,
    });
    const bufferedBytes: Gauge = new Gauge({
      name: `${METRIC_PREFIX}buffered_bytes`,
      help: "Request and response bytes the gRPC server holds for calls in progress (bounded by --max-buffer-bytes).",
      registers,
      collect: () => bufferedBytes.set(this.#bufferedBytes()),
    });
    this.#keyReloads = new Counter({
      name: `${METRIC_PREFIX}keyring_reloads_total`,
      help: "Keyring file changes picked up (ok) or refused, keeping the current keys (failed).",
      labelNames: ["result"],
      registers,
    });
    const ready: Gauge = new Gauge({
      name: `${METRIC_PREFIX}ready`,
      help: "1 when /readyz passes (socket serving, custody provider healthy, primary key self-test passed), else 0.",
      registers,
      collect: () => ready.set(this.#ready() ? 1 : 0),
    });
    new Gauge({
      name: `${METRIC_PREFIX}memory_limit_bytes`,
      help: "Memory the process may use: its cgroup (container) limit, or the machine's memory when it has none.",
      registers,
      collect() {
        this.set(memoryLimitBytes());
      },
    });
    // Counters whose label values are known up front start at 0, so rate() and increase() see
    // their first event instead of a series appearing at 1.
    for (const reason of ["max_connections", "evicted_idle"])
      this.#connectionsShed.labels(reason).inc(0);
    for (const result of ["ok", "failed"]) this.#keyReloads.labels(result).inc(0);
  }

  /** Reads the readiness probe's verdict at each scrape. */
  observeReadiness(read: () => boolean): void {
    this.#ready = read;
  }

  /** Counts a field-service Open call whose answer said some value is stale. */
  countStaleOpen(): void {
    this.#fieldStaleOpens.inc();
  }

  /** Records one call to a custody provider's key service. */
  observeProviderCall(provider: string, operation: string, result: string, seconds: number): void {
    this.#providerCalls.labels(provider, operation, result).inc();
    this.#providerLatency.labels(provider, operation).observe(seconds);
  }

  /** Counts one failed attempt inside a custody-provider call, even one retried successfully. */
  observeProviderAttempt(provider: string, errorClass: ProviderErrorClass): void {
    this.#providerFailedAttempts.labels(provider, errorClass).inc();
  }

  /** Counts a client connection closed on arrival because a limit was reached. */
  countConnectionShed(reason: "max_connections" | "evicted_idle"): void {
    this.#connectionsShed.labels(reason).inc();
  }

  /** Reads the gRPC server's held bytes at each scrape. */
  observeBufferedBytes(read: () => number): void {
    this.#bufferedBytes = read;
  }

  /** Counts a keyring reload attempt. */
  countKeyReload(result: "ok" | "failed"): void {
    this.#keyReloads.labels(result).inc();
  }

  /** Records one finished gRPC call. */
  observeCall(method: string, code: string, seconds: number): void {
    let byCode = this.#boundCalls.get(method);
    if (byCode === undefined) {
      byCode = new Map();
      this.#boundCalls.set(method, byCode);
    }
    let calls = byCode.get(code);
    if (calls === undefined) {
      calls = this.#calls.labels(method, code);
      byCode.set(code, calls);
    }
    calls.inc();
    let latency = this.#boundLatency.get(method);
    if (latency === undefined) {
      latency = this.#latency.labels(method);
      this.#boundLatency.set(method, latency);
    }
    latency.observe(seconds);
  }

  /** Publishes the key versions held; resets the info gauge so old key ids disappear. */
  setKeys(primaryKeyId: string, versions: number): void {
    this.#primaryKey.reset();
    this.#primaryKey.labels(primaryKeyId, keyIdHash(primaryKeyId)).set(1);
    this.#keyVersions.set(versions);
  }

  /** Records a provider health-check result and the state it leaves. */
  observeProviderCheck(
    provider: string,
    result: "ok" | ProviderErrorClass,
    healthy: boolean,
    suspended: boolean,
  ): void {
    this.#providerChecks.labels(provider, result).inc();
    this.#providerHealthy.labels(provider).set(healthy ? 1 : 0);
    this.#providerSuspended.labels(provider).set(suspended ? 1 : 0);
  }

  /** Counts field values sealed, opened or turned into lookup tokens. */
  countFieldValues(operation: FieldOperation, count: number): void {
    this.#fieldValues.labels(operation).inc(count);
  }
}
