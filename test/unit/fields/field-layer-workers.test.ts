import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { FieldLayer } from "../../../src/fields/field-layer.js";
import { openFieldLayer } from "../../../src/fields/open-field-layer.js";

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

describe("field layer with workers: large engine batches on several threads", () => {
  let directory: string;
  let pooled: FieldLayer;
  let inThread: FieldLayer;

  before(async () => {
    directory = await mkdtemp(join(tmpdir(), "kms-envelope-layer-workers-"));
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
    providers: [{ secretbox: { keys: [{ name: k1, secret: "${KEY}" }] } }]
`,
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
