import { totalmem } from "node:os";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import type { ProviderErrorClass } from "../../providers/types.js";
import type { WorkerPoolStats } from "../workers/worker-pool.js";
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

/** One method's calls, as plain numbers read at each scrape. */
class MethodCalls {
  readonly byCode = new Map<string, number>();
  /** Calls per latency bucket (not cumulative); past the last bound they count only in `count`. */
  readonly buckets = new Float64Array(LATENCY_BUCKETS.length);
  sum = 0;
  count = 0;

  record(code: string, seconds: number): void {
    this.byCode.set(code, (this.byCode.get(code) ?? 0) + 1);
    this.count += 1;
    this.sum += seconds;
    for (let index = 0; index < LATENCY_BUCKETS.length; index++) {
      if (seconds <= (LATENCY_BUCKETS[index] as number)) {
        this.buckets[index] = (this.buckets[index] as number) + 1;
        return;
      }
    }
  }
}

const LATENCY_NAME = `${METRIC_PREFIX}grpc_request_duration_seconds`;
const LATENCY_HELP = "Time from receiving a gRPC call to sending its answer, by full method name.";

/** One exposition sample as prom-client's registry reads it. */
interface Sample {
  labels: Record<string, string | number>;
  sharedLabels: Record<string, string>;
  value: number;
  metricName: string;
  /** prom-client's own: null on buckets, undefined on sum and count (exemplars are off). */
  exemplar: null | undefined;
}

/**
 * The call-latency histogram, published from `MethodCalls` tallies. prom-client validates and
 * hashes the label set on every observation, a measurable share of a KMS call's CPU at 10,000+
 * calls/s; here a call touches plain numbers and the series are built when scraped, in the
 * shape prom-client's own histogram gives the registry (`le`, then the shared `method`).
 * test/unit/ops/metrics.test.ts holds the exposition to a prom-client histogram's.
 */
class CallLatencyHistogram extends Histogram<"method"> {
  readonly #calls: ReadonlyMap<string, MethodCalls>;

  constructor(calls: ReadonlyMap<string, MethodCalls>, registry: Registry) {
    super({
      name: LATENCY_NAME,
      help: LATENCY_HELP,
      labelNames: ["method"],
      buckets: LATENCY_BUCKETS,
      registers: [registry],
    });
    this.#calls = calls;
  }

  /** What the registry's text exposition reads (prom-client calls it in place of get()). */
  async getForPromString(): Promise<{
    name: string;
    help: string;
    type: string;
    values: Sample[];
    aggregator: string;
  }> {
    const values: Sample[] = [];
    for (const [method, calls] of this.#calls) {
      const sharedLabels = { method };
      const bucket = `${LATENCY_NAME}_bucket`;
      let cumulative = 0;
      LATENCY_BUCKETS.forEach((bound, index) => {
        cumulative += calls.buckets[index] as number;
        values.push({
          labels: { le: bound },
          sharedLabels,
          value: cumulative,
          metricName: bucket,
          exemplar: null,
        });
      });
      values.push(
        {
          labels: { le: "+Inf" },
          sharedLabels,
          value: calls.count,
          metricName: bucket,
          exemplar: null,
        },
        {
          labels: {},
          sharedLabels,
          value: calls.sum,
          metricName: `${LATENCY_NAME}_sum`,
          exemplar: undefined,
        },
        {
          labels: {},
          sharedLabels,
          value: calls.count,
          metricName: `${LATENCY_NAME}_count`,
          exemplar: undefined,
        },
      );
    }
    return { name: LATENCY_NAME, help: LATENCY_HELP, type: "histogram", values, aggregator: "sum" };
  }

  override async get(): ReturnType<Histogram<"method">["get"]> {
    const data = await this.getForPromString();
    const values = data.values.map(({ labels, sharedLabels, ...sample }) => ({
      ...sample,
      labels: { ...labels, ...sharedLabels },
    }));
    return { ...data, values } as unknown as Awaited<ReturnType<Histogram<"method">["get"]>>;
  }
}

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
  /** By method: the calls counter and latency histogram read these when scraped. */
  readonly #methodCalls = new Map<string, MethodCalls>();
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
  #fieldWorkers: () => WorkerPoolStats | undefined = () => undefined;
  #ready: () => boolean = () => false;

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: METRIC_PREFIX });
    const methodCalls = this.#methodCalls;
    new Counter<CallLabels>({
      name: `${METRIC_PREFIX}grpc_requests_total`,
      help: "gRPC calls served, by full method name and gRPC status code name.",
      labelNames: ["method", "code"],
      registers,
      collect() {
        this.reset();
        for (const [method, calls] of methodCalls)
          for (const [code, count] of calls.byCode) this.inc({ method, code }, count);
      },
    });
    new CallLatencyHistogram(methodCalls, this.registry);
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
    this.#scrapedGauge(
      "buffered_bytes",
      "Request and response bytes the gRPC server holds for calls in progress (bounded by --max-buffer-bytes).",
      () => this.#bufferedBytes(),
    );
    const fieldWorkers = (read: (stats: WorkerPoolStats) => number) => () => {
      const stats = this.#fieldWorkers();
      return stats === undefined ? 0 : read(stats);
    };
    this.#scrapedGauge(
      "field_workers",
      "Field-service worker threads loaded and able to take calls (--field-workers).",
      fieldWorkers((stats) => stats.workers),
    );
    this.#scrapedGauge(
      "field_workers_busy",
      "Field-service worker threads running a call now.",
      fieldWorkers((stats) => stats.busy),
    );
    this.#scrapedGauge(
      "field_worker_queue",
      "Field-service calls (or parts of calls) waiting for a worker thread.",
      fieldWorkers((stats) => stats.queued),
    );
    this.#scrapedCounter(
      "field_worker_busy_seconds_total",
      "Time field-service worker threads have spent running calls, summed over the workers: its rate over field_workers is their utilization.",
      fieldWorkers((stats) => stats.busySeconds),
    );
    this.#scrapedCounter(
      "field_worker_restarts_total",
      "Field-service worker threads replaced because one stopped or failed (each is also logged).",
      fieldWorkers((stats) => stats.restarts),
    );
    this.#keyReloads = new Counter({
      name: `${METRIC_PREFIX}keyring_reloads_total`,
      help: "Keyring file changes picked up (ok) or refused, keeping the current keys (failed).",
      labelNames: ["result"],
      registers,
    });
    this.#scrapedGauge(
      "ready",
      "1 when /readyz passes (socket serving, custody provider healthy, primary key self-test passed), else 0.",
      () => (this.#ready() ? 1 : 0),
    );
    this.#scrapedGauge(
      "memory_limit_bytes",
      "Memory the process may use: its cgroup (container) limit, or the machine's memory when it has none.",
      memoryLimitBytes,
    );
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

  /** Reads the field-service worker pool's state at each scrape. */
  observeFieldWorkers(read: () => WorkerPoolStats): void {
    this.#fieldWorkers = read;
  }

  /** A gauge of the daemon's own whose value is read at each scrape. */
  #scrapedGauge(name: string, help: string, read: () => number): void {
    const gauge: Gauge = new Gauge({
      name: `${METRIC_PREFIX}${name}`,
      help,
      registers: [this.registry],
      collect: () => gauge.set(read()),
    });
  }

  /** A counter of the daemon's own whose running total is read at each scrape. */
  #scrapedCounter(name: string, help: string, read: () => number): void {
    const counter: Counter = new Counter({
      name: `${METRIC_PREFIX}${name}`,
      help,
      registers: [this.registry],
      collect: () => {
        counter.reset();
        counter.inc(read());
      },
    });
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
    let calls = this.#methodCalls.get(method);
    if (calls === undefined) {
      calls = new MethodCalls();
      this.#methodCalls.set(method, calls);
    }
    calls.record(code, seconds);
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
