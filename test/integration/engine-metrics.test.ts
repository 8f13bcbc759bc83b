import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Registry } from "prom-client";
import { parseEncryptionConfiguration } from "../../src/engine/config/encryption-configuration.js";
import { EncryptionEngine } from "../../src/engine/encryption-engine.js";
import { EngineMetrics } from "../../src/engine/engine-metrics.js";
import { Base64KmsPlugin } from "../fixtures/base64-kms-plugin.js";
import { temporaryDirectory } from "../support/daemon-process.js";

const text = (value: string) => Buffer.from(value, "utf8");
const KEY = text("/registry/secrets/default/db");

function metricLine(exposition: string, name: string, labels: string): number | undefined {
  const line = exposition.split("\n").find((entry) => entry.startsWith(`${name}{${labels}}`));
  return line === undefined ? undefined : Number(line.split(" ").pop());
}

describe("engine metrics", () => {
  let directory: Awaited<ReturnType<typeof temporaryDirectory>>;
  let plugin: Base64KmsPlugin;
  before(async () => {
    directory = await temporaryDirectory();
    plugin = await Base64KmsPlugin.start(join(directory.path, "kms.sock"), "secret-looking-key-id");
  });
  after(async () => {
    await plugin.stop();
    await directory.remove();
  });

  it("count transformations, plugin calls, health and cache size, with bounded labels and no secrets", async () => {
    const registry = new Registry();
    const metrics = new EngineMetrics(registry);
    const config = parseEncryptionConfiguration(
      `apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - kms: { apiVersion: v2, name: kube-test, endpoint: "unix://${plugin.socketPath}" }\n      - identity: {}\n`,
    );
    const engine = await EncryptionEngine.start(config, { metrics });
    try {
      const stored = await engine.encrypt("secrets", text("the plaintext"), KEY);
      await engine.encrypt("secrets", text("the plaintext"), KEY);
      await engine.decrypt("secrets", stored.data, KEY);
      await engine.decrypt("secrets", text("legacy plaintext"), KEY);
      await assert.rejects(engine.decrypt("secrets", text("k8s:enc:kms:v2:kube-test:junk"), KEY));
      const exposition = await registry.metrics();
      const transformations = "kms_envelope_engine_transformations_total";
      assert.equal(
        metricLine(
          exposition,
          transformations,
          'operation="to_storage",provider="kms:v2:kube-test",result="ok"',
        ),
        2,
      );
      assert.equal(
        metricLine(
          exposition,
          transformations,
          'operation="from_storage",provider="kms:v2:kube-test",result="ok"',
        ),
        1,
      );
      assert.equal(
        metricLine(
          exposition,
          transformations,
          'operation="from_storage",provider="identity",result="stale"',
        ),
        1,
      );
      assert.equal(
        metricLine(
          exposition,
          transformations,
          'operation="from_storage",provider="unknown",result="error"',
        ),
        1,
      );
      assert.equal(
        metricLine(
          exposition,
          "kms_envelope_engine_kms_calls_total",
          'provider="kms:v2:kube-test",method="Encrypt",code="OK"',
        ),
        1,
      );
      assert.equal(
        metricLine(
          exposition,
          "kms_envelope_engine_kms_calls_total",
          'provider="kms:v2:kube-test",method="Status",code="OK"',
        ),
        1,
      );
      assert.equal(
        metricLine(
          exposition,
          "kms_envelope_engine_kms_provider_healthy",
          'provider="kms:v2:kube-test"',
        ),
        1,
      );
      assert.equal(
        metricLine(
          exposition,
          "kms_envelope_engine_dek_source_cache_size",
          'provider="kms:v2:kube-test"',
        ),
        1,
      );
      assert.ok(
        exposition.includes("kms_envelope_engine_kms_call_duration_seconds_bucket"),
        "latency histogram",
      );
      // kube-apiserver's key-id families, as it would export them for this provider.
      const keyIdHash = `sha256:${createHash("sha256").update("secret-looking-key-id").digest("hex")}`;
      const keyIdLabels = (operation: string) =>
        `transformation_type="${operation}",provider_name="kube-test",key_id_hash="${keyIdHash}"`;
      assert.equal(
        metricLine(
          exposition,
          "apiserver_envelope_encryption_key_id_hash_total",
          keyIdLabels("to_storage"),
        ),
        2,
      );
      assert.equal(
        metricLine(
          exposition,
          "apiserver_envelope_encryption_key_id_hash_total",
          keyIdLabels("from_storage"),
        ),
        1,
        "identity reads and failed reads carry no kms key id",
      );
      assert.ok(
        (metricLine(
          exposition,
          "apiserver_envelope_encryption_key_id_hash_last_timestamp_seconds",
          keyIdLabels("to_storage"),
        ) ?? 0) > 1e9,
      );
      assert.ok(
        (metricLine(
          exposition,
          "apiserver_envelope_encryption_key_id_hash_status_last_timestamp_seconds",
          `provider_name="kube-test",key_id_hash="${keyIdHash}"`,
        ) ?? 0) > 1e9,
      );
      for (const secret of ["plaintext", "secret-looking-key-id", "legacy"])
        assert.ok(!exposition.includes(secret), `${secret} must not appear in metrics`);

      plugin.healthy = false;
      await engine.checkNow();
      assert.equal(
        metricLine(
          await registry.metrics(),
          "kms_envelope_engine_kms_provider_healthy",
          'provider="kms:v2:kube-test"',
        ),
        0,
      );
      plugin.healthy = true;
    } finally {
      engine.close();
    }
    assert.equal(
      metricLine(
        await registry.metrics(),
        "kms_envelope_engine_kms_provider_healthy",
        'provider="kms:v2:kube-test"',
      ),
      undefined,
      "a closed engine's providers are no longer reported",
    );
  });
});
