import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Registry } from "prom-client";
import { EngineMetrics } from "../../../src/engine/engine-metrics.js";
import type { FieldLayer } from "../../../src/fields/field-layer.js";
import { openFieldLayer } from "../../../src/fields/open-field-layer.js";
import { Base64KmsPlugin } from "../../fixtures/base64-kms-plugin.js";

const KEY = Buffer.alloc(32, 9).toString("base64");
const RESOURCE = "credentials.example.io";
const FIELDS = ["token", "secret", "note", "extra", "blob"];

function records(count: number): { id: string; document: Record<string, string> }[] {
  return Array.from({ length: count }, (_, index) => ({
    id: `r${index}`,
    document: {
      name: `record ${index}`,
      ...Object.fromEntries(
        FIELDS.map((field) => [field, `${field}-${index}-${"x".repeat(index % 90)}`]),
      ),
    },
  }));
}

/**
 * Writes the field map of RESOURCE's FIELDS (all engine strings) and an EncryptionConfiguration
 * protecting RESOURCE with `providers` (a YAML list) into `directory`.
 */
async function writeConfigs(
  directory: string,
  providers: string,
): Promise<{ fieldMapPath: string; encryptionConfigPath: string }> {
  const fieldMapPath = join(directory, "fields.yaml");
  const encryptionConfigPath = join(directory, "encryption.yaml");
  await writeFile(
    fieldMapPath,
    `apiVersion: kms-envelope/v1
kind: FieldMap
resources:
  - { resource: ${RESOURCE}, route: engine, fields: { ${FIELDS.map((field) => `${field}: string`).join(", ")} } }
`,
  );
  await writeFile(
    encryptionConfigPath,
    `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [${RESOURCE}]
    providers: ${providers}
`,
  );
  return { fieldMapPath, encryptionConfigPath };
}

describe("field layer with workers: large engine batches on several threads", () => {
  let directory: string;
  let pooled: FieldLayer;
  let inThread: FieldLayer;

  before(async () => {
    directory = await mkdtemp(join(tmpdir(), "kms-envelope-layer-workers-"));
    const { fieldMapPath, encryptionConfigPath } = await writeConfigs(
      directory,
      `[{ secretbox: { keys: [{ name: k1, secret: "${KEY}" }] } }]`,
    );
    pooled = await openFieldLayer({ fieldMapPath, encryptionConfigPath, workers: 2 });
    inThread = await openFieldLayer({ fieldMapPath, encryptionConfigPath });
  });
  after(async () => {
    await pooled?.close();
    await inThread?.close();
    await rm(directory, { recursive: true, force: true });
  });

  it("a batch sealed by the workers opens in-thread to the same documents, and the other way round", async () => {
    const plain = records(300);
    const sealedByWorkers = await pooled.seal(RESOURCE, plain);
    const sealedInThread = await inThread.seal(RESOURCE, plain);
    assert.deepEqual(
      sealedByWorkers.map((record) => record.stamps),
      sealedInThread.map((record) => record.stamps),
    );
    for (const [index, record] of sealedByWorkers.entries())
      assert.notEqual(record.document.token, plain[index]?.document.token, "sealed, not copied");
    const openedInThread = await inThread.open(RESOURCE, sealedByWorkers);
    const openedByWorkers = await pooled.open(RESOURCE, sealedInThread);
    for (const opened of [openedInThread, openedByWorkers]) {
      assert.deepEqual(
        opened.map((record) => record.document),
        plain.map((record) => record.document),
      );
      assert.ok(opened.every((record) => !record.stale));
    }
  });

  it("a bad value deep in a pooled batch fails it with the error the caller's thread gives", async () => {
    const sealed = await inThread.seal(RESOURCE, records(300));
    const moved = sealed.map((record) =>
      record.id === "r250"
        ? { ...record, document: { ...record.document, secret: "not base64!" } }
        : record,
    );
    const inThreadError = await inThread.open(RESOURCE, moved).catch((error: unknown) => error);
    const pooledError = await pooled.open(RESOURCE, moved).catch((error: unknown) => error);
    assert.ok(inThreadError instanceof Error && pooledError instanceof Error);
    assert.equal(
      (pooledError as { code?: string }).code,
      (inThreadError as { code?: string }).code,
    );
    assert.equal(pooledError.message, inThreadError.message);
    assert.match(pooledError.message, /r250 secret is not standard base64/);
  });

  it("small batches and single values still work on a layer with workers", async () => {
    const [sealed] = await pooled.seal(RESOURCE, records(1));
    const [opened] = await pooled.open(RESOURCE, [sealed as never]);
    assert.deepEqual(opened?.document, records(1)[0]?.document);
  });

  it("workers must be a count of at least 1 or auto", async () => {
    for (const workers of [0, 1.5, -1])
      await assert.rejects(
        openFieldLayer({ fieldMapPath: join(directory, "fields.yaml"), workers }),
        (error: { code?: string; message: string }) =>
          error.code === "INVALID_CONFIG" &&
          /workers: is .* \(give a whole number/.test(error.message),
      );
  });

  it("after close, a pooled batch is refused", async () => {
    const layer = await openFieldLayer({
      fieldMapPath: join(directory, "fields.yaml"),
      encryptionConfigPath: join(directory, "encryption.yaml"),
      workers: "auto",
    });
    await layer.close();
    await assert.rejects(layer.seal(RESOURCE, records(200)));
  });
});

// 300 records × 5 fields: past the 500 fields that send a batch to the workers, in two parts.
const KMS_RECORDS = 300;

/** The engine's per-value families as label sets and values, in a stable order. */
async function valueCounts(registry: Registry): Promise<string[]> {
  const families = await registry.getMetricsAsJSON();
  return families
    .filter((family) =>
      [
        "kms_envelope_engine_transformations_total",
        "apiserver_envelope_encryption_key_id_hash_total",
      ].includes(family.name),
    )
    .flatMap((family) =>
      family.values.map(
        (sample) => `${family.name} ${JSON.stringify(sample.labels)} ${sample.value}`,
      ),
    )
    .sort();
}

describe("field layer workers count into the layer's metrics", () => {
  let directory: string;
  let plugin: Base64KmsPlugin;
  const pooledRegistry = new Registry();
  const inThreadRegistry = new Registry();
  let pooled: FieldLayer;
  let inThread: FieldLayer;

  before(async () => {
    directory = await mkdtemp(join(tmpdir(), "kms-envelope-layer-workers-metrics-"));
    plugin = await Base64KmsPlugin.start(join(directory, "kms.sock"), "worker-key-id");
    const { fieldMapPath, encryptionConfigPath } = await writeConfigs(
      directory,
      `[{ kms: { apiVersion: v2, name: kube-test, endpoint: "unix://${plugin.socketPath}" } }]`,
    );
    pooled = await openFieldLayer({
      fieldMapPath,
      encryptionConfigPath,
      workers: 2,
      metrics: new EngineMetrics(pooledRegistry),
    });
    inThread = await openFieldLayer({
      fieldMapPath,
      encryptionConfigPath,
      metrics: new EngineMetrics(inThreadRegistry),
    });
  });
  after(async () => {
    await pooled?.close();
    await inThread?.close();
    await plugin?.stop();
    await rm(directory, { recursive: true, force: true });
  });

  it("seals, opens and a failed open count the same with workers as on the caller's thread", async () => {
    for (const layer of [pooled, inThread]) {
      const sealed = await layer.seal(RESOURCE, records(KMS_RECORDS));
      await layer.open(RESOURCE, sealed);
      // A value the plugin's envelope cannot parse: a kms batch starts every value before any
      // answers, so on either thread every other value opens and is counted.
      const broken = sealed.map((record) =>
        record.id === `r${KMS_RECORDS - 10}`
          ? {
              ...record,
              document: {
                ...record.document,
                secret: Buffer.from("k8s:enc:kms:v2:kube-test:junk").toString("base64"),
              },
            }
          : record,
      );
      await assert.rejects(layer.open(RESOURCE, broken));
    }
    const counts = await valueCounts(pooledRegistry);
    assert.deepEqual(counts, await valueCounts(inThreadRegistry));
    const fields = KMS_RECORDS * FIELDS.length;
    const transformations = "kms_envelope_engine_transformations_total";
    assert.deepEqual(
      counts.filter((line) => line.startsWith(transformations)),
      [
        `${transformations} {"operation":"from_storage","provider":"kms:v2:kube-test","result":"ok"} ${2 * fields - 1}`,
        `${transformations} {"operation":"from_storage","provider":"unknown","result":"error"} 1`,
        `${transformations} {"operation":"to_storage","provider":"kms:v2:kube-test","result":"ok"} ${fields}`,
      ],
    );
    const keyIdUses = counts.filter((line) =>
      line.startsWith("apiserver_envelope_encryption_key_id_hash_total"),
    );
    assert.equal(keyIdUses.length, 2, "written and read under the plugin's key id");
    assert.ok(keyIdUses.some((line) => line.endsWith(` ${fields}`)));
  });
});
