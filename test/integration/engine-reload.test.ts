import assert from "node:assert/strict";
import { rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { ReloadingEngine, type ReloadOutcome } from "../../src/engine/reloading-engine.js";
import { openFieldLayer } from "../../src/fields/open-field-layer.js";
import { PACKAGE_ROOT } from "../../src/package-info.js";
import { Base64KmsPlugin } from "../fixtures/base64-kms-plugin.js";
import { temporaryDirectory } from "../support/daemon-process.js";

const text = (value: string) => Buffer.from(value, "utf8");
const KEY = text("/registry/secrets/default/db");
const KEY1 = Buffer.alloc(32, 1).toString("base64");
const KEY2 = Buffer.alloc(32, 2).toString("base64");

function secretbox(...keys: [string, string][]): string {
  const list = keys.map(([name, secret]) => `{ name: ${name}, secret: "${secret}" }`).join(", ");
  return `apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers: [{ secretbox: { keys: [${list}] } }]\n`;
}

const prefixOf = (data: Uint8Array) => Buffer.from(data).toString("latin1").slice(0, 26);

describe("EncryptionConfiguration automatic reload", () => {
  let directory: Awaited<ReturnType<typeof temporaryDirectory>>;
  let path: string;
  // Editors replace files; write a temporary file and rename it, as they do.
  const edit = async (content: string) => {
    await writeFile(`${path}.tmp`, content);
    await rename(`${path}.tmp`, path);
  };

  before(async () => {
    directory = await temporaryDirectory();
    path = join(directory.path, "encryption-configuration.yaml");
  });
  after(() => directory.remove());

  it("swaps in an edited key list; a broken edit is refused and the running keys stay", async () => {
    await edit(secretbox(["key1", KEY1]));
    const outcomes: ReloadOutcome[] = [];
    const engine = await ReloadingEngine.start(path, {
      pollIntervalMs: 60_000,
      onReload: (outcome) => outcomes.push(outcome),
    });
    try {
      const old = await engine.transformerFor("secrets").toStorage(text("v1"), KEY);
      assert.equal(prefixOf(old.data), "k8s:enc:secretbox:v1:key1:");
      assert.deepEqual(await engine.reloadNow(), { status: "unchanged" });

      await edit(secretbox(["key2", KEY2], ["key1", KEY1]));
      const reloaded = await engine.reloadNow();
      assert.equal(reloaded.status, "reloaded");
      assert.equal(engine.hash, (reloaded as { hash: string }).hash);
      const fresh = await engine.transformerFor("secrets").toStorage(text("v2"), KEY);
      assert.equal(prefixOf(fresh.data), "k8s:enc:secretbox:v1:key2:");
      const read = await engine.transformerFor("secrets").fromStorage(old.data, KEY);
      assert.deepEqual([Buffer.from(read.plaintext).toString(), read.stale], ["v1", true]);

      await edit(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources: [{ resources: [secrets], providers: [{ secretbox: { keys: [{ name: k, secret: short }] } }] }]\n",
      );
      const refused = await engine.reloadNow();
      assert.equal(refused.status, "refused");
      assert.match((refused as { reason: string }).reason, /secret/);
      assert.doesNotMatch(
        (refused as { reason: string }).reason,
        new RegExp(KEY1.slice(0, 12)),
        "no key in messages",
      );
      const still = await engine.transformerFor("secrets").toStorage(text("v3"), KEY);
      assert.equal(prefixOf(still.data), "k8s:enc:secretbox:v1:key2:", "the running keys stay");
      assert.deepEqual(
        outcomes.map((outcome) => outcome.status),
        ["reloaded", "refused"],
        "onReload hears about changed files only",
      );
    } finally {
      engine.close();
    }
  });

  it("a field layer opened with reloadIntervalMs follows the file", async () => {
    await edit(secretbox(["key1", KEY1]).replace("[secrets]", "[sessioncookies.obot.obot.ai]"));
    const layer = await openFieldLayer({
      fieldMapPath: join(PACKAGE_ROOT, "config/field-map-obot.yaml"),
      encryptionConfigPath: path,
      reloadIntervalMs: 50,
    });
    try {
      const writer = () => layer.currentWriter("sessioncookies.obot.obot.ai", "cookie");
      assert.deepEqual(await writer(), { provider: "secretbox", keyId: "key1" });
      await edit(secretbox(["key2", KEY2]).replace("[secrets]", "[sessioncookies.obot.obot.ai]"));
      const deadline = Date.now() + 5_000;
      while ((await writer()).keyId !== "key2" && Date.now() < deadline)
        await new Promise((resolve) => setTimeout(resolve, 25));
      assert.deepEqual(await writer(), { provider: "secretbox", keyId: "key2" });
    } finally {
      await layer.close();
    }
  });

  it("polls the file on its own", async () => {
    await edit(secretbox(["key1", KEY1]));
    const engine = await ReloadingEngine.start(path, { pollIntervalMs: 50 });
    try {
      await edit(secretbox(["key2", KEY2]));
      const deadline = Date.now() + 5_000;
      while (
        engine.transformerFor("secrets").currentWriter().keyId !== "key2" &&
        Date.now() < deadline
      )
        await new Promise((resolve) => setTimeout(resolve, 25));
      assert.equal(engine.transformerFor("secrets").currentWriter().keyId, "key2");
    } finally {
      engine.close();
    }
  });

  it("waits for a new kms provider to become healthy, and refuses the config if it does not", async () => {
    await edit(secretbox(["key1", KEY1]));
    const socket = join(directory.path, "kms.sock");
    const withKms = `apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - kms: { apiVersion: v2, name: kube-test, endpoint: "unix://${socket}", timeout: 500ms }\n      - secretbox: { keys: [{ name: key1, secret: "${KEY1}" }] }\n`;
    const engine = await ReloadingEngine.start(path, { pollIntervalMs: 60_000, healthWaitMs: 600 });
    let plugin: Base64KmsPlugin | undefined;
    try {
      const old = await engine.transformerFor("secrets").toStorage(text("before"), KEY);
      await edit(withKms);
      const refused = await engine.reloadNow();
      assert.equal(refused.status, "refused");
      assert.match(
        (refused as { reason: string }).reason,
        /kms provider kube-test: .*Status failed/,
      );
      assert.equal(
        engine.transformerFor("secrets").currentWriter().provider,
        "secretbox",
        "old config kept",
      );

      plugin = await Base64KmsPlugin.start(socket);
      // A refused file is tried again at every poll, so the same file now loads.
      assert.equal((await engine.reloadNow()).status, "reloaded");
      const fresh = await engine.transformerFor("secrets").toStorage(text("after"), KEY);
      assert.equal(fresh.writer.provider, "kms:v2:kube-test");
      const read = await engine.transformerFor("secrets").fromStorage(old.data, KEY);
      assert.deepEqual([Buffer.from(read.plaintext).toString(), read.stale], ["before", true]);
    } finally {
      engine.close();
      await plugin?.stop();
    }
  });
});
