import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Histogram, Registry } from "prom-client";
import { keyIdHash } from "../../../src/ops/key-id-metrics.js";
import { DaemonMetrics, METRIC_PREFIX } from "../../../src/ops/metrics.js";

async function value(
  metrics: DaemonMetrics,
  name: string,
  labels: Record<string, string> = {},
): Promise<number | undefined> {
  const metric = metrics.registry.getSingleMetric(`${METRIC_PREFIX}${name}`);
  assert.ok(metric !== undefined, `${name} is registered`);
  const { values } = await metric.get();
  return values.find((entry) =>
    Object.entries(labels).every(([key, wanted]) => entry.labels[key] === wanted),
  )?.value;
}

describe("DaemonMetrics", () => {
  test("every metric, default process metrics included, starts with kms_envelope_, but kube-apiserver's key-id families", async () => {
    const metrics = new DaemonMetrics();
    const names = (await metrics.registry.getMetricsAsJSON()).map((metric) => metric.name);
    assert.ok(names.length > 8);
    const upstream = names.filter((name) => !name.startsWith(METRIC_PREFIX)).sort();
    assert.deepEqual(upstream, [
      "apiserver_envelope_encryption_key_id_hash_last_timestamp_seconds",
      "apiserver_envelope_encryption_key_id_hash_status_last_timestamp_seconds",
      "apiserver_envelope_encryption_key_id_hash_total",
    ]);
    assert.equal(METRIC_PREFIX, "kms_envelope_");
  });

  test("observeCall counts calls by method and status code and records latency", async () => {
    const metrics = new DaemonMetrics();
    metrics.observeCall("/v2.KeyManagementService/Encrypt", "OK", 0.0002);
    metrics.observeCall("/v2.KeyManagementService/Encrypt", "OK", 0.0004);
    metrics.observeCall("/v2.KeyManagementService/Decrypt", "INVALID_ARGUMENT", 0.001);
    const encryptOk = { method: "/v2.KeyManagementService/Encrypt", code: "OK" };
    assert.equal(await value(metrics, "grpc_requests_total", encryptOk), 2);
    assert.equal(
      await value(metrics, "grpc_requests_total", {
        method: "/v2.KeyManagementService/Decrypt",
        code: "INVALID_ARGUMENT",
      }),
      1,
    );
    const text = await metrics.registry.metrics();
    assert.match(
      text,
      /kms_envelope_grpc_request_duration_seconds_count\{method="\/v2\.KeyManagementService\/Encrypt"\} 2/,
    );
  });

  test("the call latency histogram reads as prom-client's own histogram would, text and JSON", async () => {
    const metrics = new DaemonMetrics();
    const registry = new Registry();
    const reference = new Histogram({
      name: `${METRIC_PREFIX}grpc_request_duration_seconds`,
      help: "Time from receiving a gRPC call to sending its answer, by full method name.",
      labelNames: ["method"],
      buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1],
      registers: [registry],
    });
    // Every bucket, both edges of one, and past the last.
    const latencies = [
      0, 0.00005, 0.00007, 0.0001, 0.0003, 0.0009, 0.002, 0.004, 0.009, 0.03, 0.2, 0.9, 1, 7,
    ];
    for (const [index, seconds] of latencies.entries()) {
      const method =
        index % 3 === 0 ? "/v2.KeyManagementService/Status" : "/v2.KeyManagementService/Encrypt";
      metrics.observeCall(method, index % 2 === 0 ? "OK" : "INTERNAL", seconds);
      reference.labels(method).observe(seconds);
    }
    const name = `${METRIC_PREFIX}grpc_request_duration_seconds`;
    const lines = (text: string) => text.split("\n").filter((line) => line.includes(name));
    assert.deepEqual(lines(await metrics.registry.metrics()), lines(await registry.metrics()));
    const json = async (from: Registry) =>
      (await from.getMetricsAsJSON()).find((metric) => metric.name === name);
    assert.deepEqual(await json(metrics.registry), await json(registry));
  });

  test("setKeys publishes the primary key id and replaces the previous one", async () => {
    const metrics = new DaemonMetrics();
    metrics.setKeys("local:AAAAAAAAAAAAAAAA", 1);
    metrics.setKeys("local:BBBBBBBBBBBBBBBB", 2);
    const text = await metrics.registry.metrics();
    assert.ok(
      text.includes(
        `kms_envelope_primary_key_info{key_id="local:BBBBBBBBBBBBBBBB",key_id_hash="${keyIdHash("local:BBBBBBBBBBBBBBBB")}"} 1`,
      ),
      "the key id and its hash, which joins kube-apiserver's key_id_hash labels",
    );
    assert.ok(!text.includes("local:AAAAAAAAAAAAAAAA"), "the old key id disappears");
    assert.equal(await value(metrics, "key_versions"), 2);
  });

  test("observeProviderCheck counts results and sets healthy and suspended gauges", async () => {
    const metrics = new DaemonMetrics();
    metrics.observeProviderCheck("aws", "ok", true, false);
    metrics.observeProviderCheck("aws", "user", false, true);
    metrics.observeProviderCheck("aws", "user", false, true);
    assert.equal(await value(metrics, "provider_checks_total", { result: "ok" }), 1);
    assert.equal(await value(metrics, "provider_checks_total", { result: "user" }), 2);
    assert.equal(await value(metrics, "provider_healthy", { provider: "aws" }), 0);
    assert.equal(await value(metrics, "provider_suspended", { provider: "aws" }), 1);
    metrics.observeProviderCheck("aws", "ok", true, false);
    assert.equal(await value(metrics, "provider_healthy", { provider: "aws" }), 1);
    assert.equal(await value(metrics, "provider_suspended", { provider: "aws" }), 0);
  });

  test("observeProviderAttempt counts failed attempts by provider and error class", async () => {
    const metrics = new DaemonMetrics();
    metrics.observeProviderAttempt("aws", "throttled");
    metrics.observeProviderAttempt("aws", "throttled");
    metrics.observeProviderAttempt("gcp", "other");
    assert.equal(
      await value(metrics, "provider_failed_attempts_total", {
        provider: "aws",
        result: "throttled",
      }),
      2,
    );
    assert.equal(
      await value(metrics, "provider_failed_attempts_total", { provider: "gcp", result: "other" }),
      1,
    );
    assert.match(
      await metrics.registry.metrics(),
      /kms_envelope_provider_failed_attempts_total\{provider="aws",result="throttled"\} 2/,
    );
  });

  test("countFieldValues adds per operation", async () => {
    const metrics = new DaemonMetrics();
    metrics.countFieldValues("seal", 3);
    metrics.countFieldValues("seal", 2);
    metrics.countFieldValues("open", 7);
    metrics.countFieldValues("lookup", 4);
    assert.equal(await value(metrics, "field_values_total", { operation: "seal" }), 5);
    assert.equal(await value(metrics, "field_values_total", { operation: "open" }), 7);
    assert.equal(await value(metrics, "field_values_total", { operation: "lookup" }), 4);
  });

  test("countStaleOpen counts Open calls that returned stale values", async () => {
    const metrics = new DaemonMetrics();
    assert.equal(await value(metrics, "field_stale_opens_total"), 0);
    metrics.countStaleOpen();
    metrics.countStaleOpen();
    assert.equal(await value(metrics, "field_stale_opens_total"), 2);
  });

  test("ready follows the readiness probe at each scrape; 0 until told how to read it", async () => {
    const metrics = new DaemonMetrics();
    assert.equal(await value(metrics, "ready"), 0);
    let ready = true;
    metrics.observeReadiness(() => ready);
    assert.equal(await value(metrics, "ready"), 1);
    ready = false;
    assert.equal(await value(metrics, "ready"), 0);
  });

  test("memory_limit_bytes is a positive finite limit that RSS can be compared with", async () => {
    const limit = await value(new DaemonMetrics(), "memory_limit_bytes");
    assert.ok(limit !== undefined && Number.isFinite(limit) && limit > 0, String(limit));
    const rss = await value(new DaemonMetrics(), "process_resident_memory_bytes");
    assert.ok(rss !== undefined && rss < limit);
  });

  test("counters with a known set of labels start at 0, so rate() sees their first event", async () => {
    const metrics = new DaemonMetrics();
    for (const reason of ["max_connections", "evicted_idle"])
      assert.equal(await value(metrics, "connections_shed_total", { reason }), 0, reason);
    for (const result of ["ok", "failed"])
      assert.equal(await value(metrics, "keyring_reloads_total", { result }), 0, result);
  });

  test("two instances have independent registries", async () => {
    const first = new DaemonMetrics();
    const second = new DaemonMetrics();
    first.countFieldValues("seal", 1);
    assert.equal(await value(second, "field_values_total", { operation: "seal" }), undefined);
  });
});
