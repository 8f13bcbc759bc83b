import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Registry } from "prom-client";
import { KeyIdMetrics, keyIdHash } from "../../../src/ops/key-id-metrics.js";

const USES = "apiserver_envelope_encryption_key_id_hash_total";
const LAST_USE = "apiserver_envelope_encryption_key_id_hash_last_timestamp_seconds";
const LAST_STATUS = "apiserver_envelope_encryption_key_id_hash_status_last_timestamp_seconds";

async function series(
  registry: Registry,
  name: string,
): Promise<{ labels: Partial<Record<string, string | number>>; value: number }[]> {
  const metric = registry.getSingleMetric(name);
  assert.ok(metric !== undefined, `${name} is registered`);
  return (await metric.get()).values;
}

describe("keyIdHash", () => {
  test("is sha256: and the hex SHA-256 of the id, as kube-apiserver labels key ids", () => {
    // FIPS 180-2's "abc" vector.
    assert.equal(
      keyIdHash("abc"),
      "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    );
    assert.match(keyIdHash("local:AAAAAAAAAAAAAAAA"), /^sha256:[0-9a-f]{64}$/);
  });

  test("leaves an empty id empty, as kube-apiserver does", () => {
    assert.equal(keyIdHash(""), "");
  });
});

describe("KeyIdMetrics", () => {
  test("counts uses by transformation type, provider and hashed key id, with the time of the last", async () => {
    const registry = new Registry();
    const metrics = new KeyIdMetrics(registry);
    const before = Date.now() / 1000;
    metrics.recordUse("to_storage", "local", "local:KEY-ONE");
    metrics.recordUse("from_storage", "local", "local:KEY-ONE");
    metrics.recordUse("from_storage", "local", "local:KEY-ONE");
    const labels = {
      transformation_type: "from_storage",
      provider_name: "local",
      key_id_hash: keyIdHash("local:KEY-ONE"),
    };
    const uses = await series(registry, USES);
    assert.equal(uses.length, 2);
    assert.deepEqual(
      uses.find((entry) => entry.labels.transformation_type === "from_storage"),
      {
        labels,
        value: 2,
      },
    );
    const [last] = (await series(registry, LAST_USE)).filter(
      (entry) => entry.labels.transformation_type === "from_storage",
    );
    assert.ok(last !== undefined && last.value >= before && last.value <= Date.now() / 1000);
  });

  test("records the key id a Status call reported, per provider", async () => {
    const registry = new Registry();
    const metrics = new KeyIdMetrics(registry);
    metrics.recordStatus("aws", "aws:KEY-TWO");
    const [status] = await series(registry, LAST_STATUS);
    assert.deepEqual(status?.labels, {
      provider_name: "aws",
      key_id_hash: keyIdHash("aws:KEY-TWO"),
    });
  });

  test("never exposes a raw key id", async () => {
    const registry = new Registry();
    const metrics = new KeyIdMetrics(registry);
    metrics.recordUse("to_storage", "local", "local:RAW-KEY-ID-MARKER");
    metrics.recordStatus("local", "local:RAW-KEY-ID-MARKER");
    assert.ok(!(await registry.metrics()).includes("RAW-KEY-ID-MARKER"));
  });

  test("keeps the 100 most recently used label sets of each family and drops older ones", async () => {
    const registry = new Registry();
    const metrics = new KeyIdMetrics(registry);
    for (let index = 0; index < 150; index++) {
      metrics.recordUse("from_storage", "local", `local:${index}`);
      metrics.recordStatus("local", `local:${index}`);
      // Key 0 stays in use, so it is never the oldest.
      metrics.recordUse("from_storage", "local", "local:0");
    }
    for (const name of [USES, LAST_USE, LAST_STATUS])
      assert.equal((await series(registry, name)).length, 100, name);
    const hashes = new Set((await series(registry, USES)).map((entry) => entry.labels.key_id_hash));
    assert.ok(hashes.has(keyIdHash("local:0")), "a key id in use is kept");
    assert.ok(hashes.has(keyIdHash("local:149")), "the newest is kept");
    assert.ok(!hashes.has(keyIdHash("local:1")), "the oldest unused one is dropped");
    const [zero] = (await series(registry, USES)).filter(
      (entry) => entry.labels.key_id_hash === keyIdHash("local:0"),
    );
    assert.equal(zero?.value, 151);
  });

  test("a key id forgotten while it was the latest of its kind is counted afresh on its next use", async () => {
    const registry = new Registry();
    const metrics = new KeyIdMetrics(registry);
    metrics.recordUse("from_storage", "local", "local:HOT");
    for (let index = 0; index < 100; index++)
      metrics.recordUse("to_storage", "local", `local:${index}`);
    const hot = keyIdHash("local:HOT");
    const before = await series(registry, USES);
    assert.ok(
      !before.some((entry) => entry.labels.key_id_hash === hot),
      "the oldest set was dropped",
    );
    metrics.recordUse("from_storage", "local", "local:HOT");
    const after = (await series(registry, USES)).filter(
      (entry) => entry.labels.key_id_hash === hot,
    );
    assert.deepEqual(
      after.map((entry) => entry.value),
      [1],
    );
    assert.equal((await series(registry, USES)).length, 100);
  });
});
