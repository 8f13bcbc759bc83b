import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Registry } from "prom-client";
import { EngineMetrics } from "../../../src/engine/engine-metrics.js";
import { countRelayed, MetricsRecorder } from "../../../src/engine/relayed-metrics.js";

const writer = { provider: "kms:v2:kube-test", keyId: "key-1" };

describe("MetricsRecorder and countRelayed", () => {
  it("keep what a job reports, aggregated, and nothing reported outside a job", () => {
    const recorder = new MetricsRecorder();
    recorder.transformation("to_storage", writer.provider, "ok");
    recorder.kmsCall(writer.provider, "Decrypt", "OK", 0.01);
    recorder.begin();
    for (let value = 0; value < 3; value++) {
      recorder.transformation("to_storage", writer.provider, "ok");
      recorder.kmsKeyIdUse("to_storage", writer);
    }
    recorder.transformation("from_storage", "unknown", "error");
    recorder.kmsCall(writer.provider, "Decrypt", "OK", 0.02);
    recorder.kmsCall(writer.provider, "Status", "OK", 0.001);
    assert.deepEqual(recorder.take(), {
      transformations: [
        ["to_storage", writer.provider, "ok", 3],
        ["from_storage", "unknown", "error", 1],
      ],
      keyIdUses: [["to_storage", writer, 3]],
      kmsCalls: [[writer.provider, "Decrypt", "OK", 0.02]],
    });
    recorder.transformation("to_storage", writer.provider, "ok");
    assert.deepEqual(recorder.take(), { transformations: [], keyIdUses: [], kmsCalls: [] });
  });

  it("countRelayed counts them in the layer's metrics as the engine would have", async () => {
    const registry = new Registry();
    const metrics = new EngineMetrics(registry);
    countRelayed(metrics, {
      transformations: [["to_storage", writer.provider, "ok", 3]],
      keyIdUses: [["to_storage", writer, 3]],
      kmsCalls: [[writer.provider, "Decrypt", "OK", 0.02]],
    });
    const text = await registry.metrics();
    assert.match(
      text,
      /kms_envelope_engine_transformations_total\{operation="to_storage",provider="kms:v2:kube-test",result="ok"\} 3/,
    );
    assert.match(
      text,
      /kms_envelope_engine_kms_calls_total\{provider="kms:v2:kube-test",method="Decrypt",code="OK"\} 1/,
    );
    assert.match(
      text,
      /apiserver_envelope_encryption_key_id_hash_total\{transformation_type="to_storage",provider_name="kube-test",key_id_hash="sha256:[0-9a-f]{64}"\} 3/,
    );
  });
});
