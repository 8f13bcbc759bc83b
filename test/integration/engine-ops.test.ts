import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Registry } from "prom-client";
import { parseEncryptionConfiguration } from "../../src/engine/config/encryption-configuration.js";
import { EncryptionEngine } from "../../src/engine/encryption-engine.js";
import { EngineMetrics } from "../../src/engine/engine-metrics.js";
import { engineHealth, engineOpsHandler, engineOpsReport } from "../../src/engine/engine-ops.js";
import { openFieldLayer } from "../../src/fields/open-field-layer.js";
import { PACKAGE_ROOT } from "../../src/package-info.js";
import { Base64KmsPlugin } from "../fixtures/base64-kms-plugin.js";
import { temporaryDirectory } from "../support/daemon-process.js";

const KEY = Buffer.from("/registry/secrets/default/db");

function configText(socketPath: string): string {
  return `apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets, "*.obot.obot.ai"]\n    providers:\n      - kms: { apiVersion: v2, name: kube-test, endpoint: "unix://${socketPath}" }\n      - identity: {}\n`;
}

describe("engine health and metrics for applications", () => {
  let directory: Awaited<ReturnType<typeof temporaryDirectory>>;
  let plugin: Base64KmsPlugin;
  let engine: EncryptionEngine;
  let server: Server;
  let base: string;
  const registry = new Registry();

  before(async () => {
    directory = await temporaryDirectory();
    plugin = await Base64KmsPlugin.start(join(directory.path, "kms.sock"), "ops-key-id");
    engine = await EncryptionEngine.start(
      parseEncryptionConfiguration(configText(plugin.socketPath)),
      { metrics: new EngineMetrics(registry) },
    );
    server = createServer(engineOpsHandler({ engine, registry }));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    engine?.close();
    server?.closeAllConnections();
    await new Promise((resolve) => server?.close(resolve));
    await plugin?.stop();
    await directory?.remove();
  });

  it("serves the engine's metrics, kube-apiserver's key-id families included, on GET /metrics", async () => {
    await engine.encrypt("secrets", Buffer.from("a secret"), KEY);
    const response = await fetch(`${base}/metrics`);
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("content-type"), registry.contentType);
    const text = await response.text();
    assert.match(text, /kms_envelope_engine_transformations_total\{operation="to_storage"/);
    assert.match(
      text,
      /apiserver_envelope_encryption_key_id_hash_total\{transformation_type="to_storage",provider_name="kube-test",key_id_hash="sha256:[0-9a-f]{64}"\} 1/,
    );
    assert.ok(!text.includes("ops-key-id"), "the key id is only ever hashed");
  });

  it("answers /healthz and /readyz 200 ok while every kms provider is healthy, /livez always", async () => {
    for (const path of ["/healthz", "/readyz", "/livez"]) {
      const response = await fetch(`${base}${path}`);
      assert.equal(response.status, 200, path);
      assert.equal(await response.text(), "ok\n");
    }
  });

  it("answers 503 naming the failing provider, keeps /livez 200, and recovers with the plugin", async () => {
    plugin.healthy = false;
    try {
      await engine.checkNow();
      for (const path of ["/healthz", "/readyz"]) {
        const response = await fetch(`${base}${path}`);
        assert.equal(response.status, 503, path);
        assert.match(await response.text(), /^kms provider kube-test \(v2\): .*plugin is failing/);
      }
      assert.equal(
        (await fetch(`${base}/livez`)).status,
        200,
        "a restart would not heal the plugin",
      );
      const report = await engineOpsReport({ engine, registry });
      assert.equal(report.health.ok, false);
      assert.equal(report.health.providers[0]?.name, "kube-test");
      assert.match(
        report.metrics,
        /kms_envelope_engine_kms_provider_healthy\{provider="kms:v2:kube-test"\} 0/,
      );
      assert.equal(report.contentType, registry.contentType);
    } finally {
      plugin.healthy = true;
    }
    await engine.checkNow();
    assert.equal((await fetch(`${base}/readyz`)).status, 200);
  });

  it("refuses other methods (405) and other paths (404), like the daemon's probe port", async () => {
    assert.equal((await fetch(`${base}/metrics`, { method: "POST" })).status, 405);
    const missing = await fetch(`${base}/nothing`);
    assert.equal(missing.status, 404);
    assert.equal(await missing.text(), "not found: try /healthz, /livez, /readyz or /metrics\n");
  });

  it("a field layer reports its engine's providers; with no kms provider the summary is ok", async () => {
    const configPath = join(directory.path, "encryption-configuration.yaml");
    await writeFile(configPath, configText(plugin.socketPath));
    const layer = await openFieldLayer({
      fieldMapPath: join(PACKAGE_ROOT, "config/field-map-obot.yaml"),
      encryptionConfigPath: configPath,
    });
    try {
      assert.deepEqual(engineHealth(layer), {
        ok: true,
        reason: "ok",
        providers: [{ name: "kube-test", apiVersion: "v2", ok: true, detail: "ok" }],
      });
    } finally {
      await layer.close();
    }
    assert.deepEqual(engineHealth({ health: () => [] }), { ok: true, reason: "ok", providers: [] });
  });
});
