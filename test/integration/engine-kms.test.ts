import assert from "node:assert/strict";
import { createDecipheriv } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { parseEncryptionConfiguration } from "../../src/engine/config/encryption-configuration.js";
import { EncryptionEngine } from "../../src/engine/encryption-engine.js";
import {
  DekSourceType,
  decodeEncryptedObject,
  encodeEncryptedObject,
} from "../../src/engine/kms/encrypted-object.js";
import { cbcSeal } from "../../src/engine/transformers/aes-cbc.js";
import { gcmSeal } from "../../src/engine/transformers/aes-gcm.js";
import { hkdfExpandKey } from "../../src/engine/transformers/aes-gcm-extended-nonce.js";
import { Base64KmsPlugin } from "../fixtures/base64-kms-plugin.js";

const text = (value: string) => Buffer.from(value, "utf8");
const SECRET_KEY = text("/registry/secrets/default/db");
const PREFIX = "k8s:enc:kms:v2:kube-test:";
const FAST = { healthyPollMs: 60_000, unhealthyPollMs: 60_000, writeTtlMs: 180_000 };

let directory: string;
before(async () => {
  directory = await mkdtemp(join(tmpdir(), "kmse-engine-"));
});
after(() => rm(directory, { recursive: true, force: true }));

function kmsConfig(socket: string, providers = "[kms]", extra = "") {
  const kms = `{ kms: { apiVersion: v2, name: kube-test, endpoint: "unix://${socket}", timeout: 2s } }`;
  const identity = "{ identity: {} }";
  const list = providers
    .replace("kms", kms)
    .replace("identity", identity)
    .replace(
      "cbc",
      '{ aescbc: { keys: [{ name: old, secret: "YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0NTY=" }] } }',
    );
  return parseEncryptionConfiguration(
    `apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers: ${list}\n${extra}`,
    { allowKmsV1: true },
  );
}

async function withPlugin<T>(
  name: string,
  run: (plugin: Base64KmsPlugin, socket: string) => Promise<T>,
) {
  const socket = join(directory, `${name}.sock`);
  const plugin = await Base64KmsPlugin.start(socket);
  try {
    return await run(plugin, socket);
  } finally {
    await plugin.stop();
  }
}

describe("kms v2 through a plugin socket (kube-apiserver's base64 test plugin)", () => {
  it("writes k8s:enc:kms:v2 values whose EncryptedObject an independent reader can open", async () => {
    await withPlugin("layout", async (plugin, socket) => {
      const engine = await EncryptionEngine.start(kmsConfig(socket));
      try {
        const stored = await engine.encrypt("secrets", text("top secret"), SECRET_KEY);
        const data = Buffer.from(stored.data);
        assert.equal(data.subarray(0, PREFIX.length).toString(), PREFIX);
        assert.deepEqual(stored.writer, { provider: "kms:v2:kube-test", keyId: "1" });
        const object = decodeEncryptedObject(data.subarray(PREFIX.length));
        assert.equal(object.keyId, "1");
        assert.equal(object.dekSourceType, DekSourceType.HkdfSha256XNonceAesGcmSeed);
        assert.deepEqual(Object.fromEntries(object.annotations), {
          "local-kek.kms.kubernetes.io": Buffer.from("encrypted-local-kek"),
        });
        // The base64 plugin's "ciphertext" is the seed in base64: open the value by hand,
        // following KMS-CONTRACT §3.1 step by step.
        const seed = Buffer.from(Buffer.from(object.encryptedDekSource).toString(), "base64");
        assert.equal(seed.length, 32);
        const body = Buffer.from(object.encryptedData);
        const key = hkdfExpandKey(seed, body.subarray(0, 32));
        const decipher = createDecipheriv("aes-256-gcm", key, body.subarray(32, 44));
        decipher.setAAD(SECRET_KEY);
        decipher.setAuthTag(body.subarray(body.length - 16));
        const plaintext = Buffer.concat([
          decipher.update(body.subarray(44, body.length - 16)),
          decipher.final(),
        ]);
        assert.equal(plaintext.toString(), "top secret");
        assert.equal(plugin.calls.encrypt, 1);
      } finally {
        engine.close();
      }
    });
  });

  it("makes exactly one Encrypt call for 10,000 writes, and no Decrypt to read them back", async () => {
    await withPlugin("many", async (plugin, socket) => {
      const engine = await EncryptionEngine.start(kmsConfig(socket));
      try {
        const values = [];
        for (let i = 0; i < 10_000; i++)
          values.push(await engine.encrypt("secrets", text(`value ${i}`), SECRET_KEY));
        assert.equal(plugin.calls.encrypt, 1, "one seed for every write");
        const read = await engine.decrypt(
          "secrets",
          (values[9_999] as { data: Uint8Array }).data,
          SECRET_KEY,
        );
        assert.equal(Buffer.from(read.plaintext).toString(), "value 9999");
        assert.equal(read.stale, false, "written under the current key id");
        assert.equal(plugin.calls.decrypt, 0, "its own seed is cached from the write");
      } finally {
        engine.close();
      }
    });
  });

  it("decrypts each distinct stored seed once, however many values share it", async () => {
    await withPlugin("reader", async (plugin, socket) => {
      const writer = await EncryptionEngine.start(kmsConfig(socket));
      const stored = await Promise.all(
        Array.from({ length: 200 }, (_, i) => writer.encrypt("secrets", text(`v${i}`), SECRET_KEY)),
      );
      writer.close();
      const reader = await EncryptionEngine.start(kmsConfig(socket));
      try {
        const reads = await Promise.all(
          stored.map((value) => reader.decrypt("secrets", value.data, SECRET_KEY)),
        );
        assert.equal(
          Buffer.from((reads[123] as { plaintext: Uint8Array }).plaintext).toString(),
          "v123",
        );
        assert.equal(plugin.calls.decrypt, 1, "200 concurrent reads of one seed share one Decrypt");
      } finally {
        reader.close();
      }
    });
  });

  it("refuses tampering: another etcd key, a flipped byte in the data, the prefix or the stored seed", async () => {
    await withPlugin("tamper", async (_plugin, socket) => {
      const engine = await EncryptionEngine.start(kmsConfig(socket));
      try {
        const data = Buffer.from((await engine.encrypt("secrets", text("v"), SECRET_KEY)).data);
        await assert.rejects(
          engine.decrypt("secrets", data, text("/registry/secrets/default/other")),
          {
            code: "DECRYPTION_FAILED",
          },
        );
        const flipped = Buffer.from(data);
        flipped[flipped.length - 1] = (flipped[flipped.length - 1] as number) ^ 1;
        await assert.rejects(engine.decrypt("secrets", flipped, SECRET_KEY), {
          code: "DECRYPTION_FAILED",
        });
        const renamed = Buffer.from(data);
        renamed[PREFIX.length - 2] = "x".charCodeAt(0);
        await assert.rejects(
          engine.decrypt("secrets", renamed, SECRET_KEY),
          /no matching prefix found/,
        );
        const garbage = Buffer.concat([text(PREFIX), Buffer.from([0xff, 0xff, 0xff])]);
        await assert.rejects(engine.decrypt("secrets", garbage, SECRET_KEY), {
          code: "MALFORMED_CIPHERTEXT",
        });
      } finally {
        engine.close();
      }
    });
  });

  it("re-seeds when the plugin restarts with a new key id; old values read stale, new ones fresh", async () => {
    const socket = join(directory, "restart.sock");
    let plugin = await Base64KmsPlugin.start(socket, "key-1");
    const engine = await EncryptionEngine.start(kmsConfig(socket), { kmsV2Timing: FAST });
    try {
      const old = await engine.encrypt("secrets", text("before"), SECRET_KEY);
      await plugin.stop();
      await engine.checkNow();
      assert.equal(engine.health()[0]?.ok, false, "the check fails while the plugin is gone");
      const coasting = await engine.encrypt("secrets", text("coasting"), SECRET_KEY);
      assert.equal(coasting.writer.keyId, "key-1", "writes coast on the last seed within its TTL");

      plugin = await Base64KmsPlugin.start(socket, "key-2");
      // The client reconnects with a bounded backoff, as kube-apiserver's does.
      for (let attempt = 0; attempt < 50 && !engine.health()[0]?.ok; attempt++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        await engine.checkNow();
      }
      assert.deepEqual(engine.health()[0], {
        name: "kube-test",
        apiVersion: "v2",
        ok: true,
        detail: "ok",
      });
      const fresh = await engine.encrypt("secrets", text("after"), SECRET_KEY);
      assert.equal(fresh.writer.keyId, "key-2");
      assert.equal(plugin.calls.encrypt, 1, "one Encrypt for the new key id");
      const oldRead = await engine.decrypt("secrets", old.data, SECRET_KEY);
      assert.equal(Buffer.from(oldRead.plaintext).toString(), "before");
      assert.equal(oldRead.stale, true, "a value under the previous key id is stale");
      assert.equal((await engine.decrypt("secrets", fresh.data, SECRET_KEY)).stale, false);
    } finally {
      engine.close();
      await plugin.stop();
    }
  });

  it("stops writing once the seed expires while the plugin is unhealthy, and resumes after", async () => {
    await withPlugin("expiry", async (plugin, socket) => {
      const engine = await EncryptionEngine.start(kmsConfig(socket), {
        kmsV2Timing: { healthyPollMs: 60_000, unhealthyPollMs: 60_000, writeTtlMs: 200 },
      });
      try {
        const stored = await engine.encrypt("secrets", text("v"), SECRET_KEY);
        plugin.healthy = false;
        await engine.checkNow();
        assert.match(
          engine.health()[0]?.detail ?? "",
          /unexpected healthz status: "plugin is failing"/,
        );
        await new Promise((resolve) => setTimeout(resolve, 300));
        await assert.rejects(
          engine.encrypt("secrets", text("v"), SECRET_KEY),
          (error: Error & { code?: string }) => {
            assert.equal(error.code, "KMS_PLUGIN_FAILED");
            assert.match(error.message, /expired at .* writes resume at the next healthy check/);
            return true;
          },
        );
        assert.equal(
          Buffer.from(
            (await engine.decrypt("secrets", stored.data, SECRET_KEY)).plaintext,
          ).toString(),
          "v",
          "reads never expire",
        );
        plugin.healthy = true;
        await engine.checkNow();
        assert.equal((await engine.encrypt("secrets", text("v"), SECRET_KEY)).writer.keyId, "1");
      } finally {
        engine.close();
      }
    });
  });

  it("reads the Kubernetes 1.25-1.28 AES_GCM_KEY mode and reports it stale", async () => {
    await withPlugin("legacy-mode", async (_plugin, socket) => {
      const engine = await EncryptionEngine.start(kmsConfig(socket));
      try {
        const dek = Buffer.alloc(32, 9);
        const legacy = encodeEncryptedObject({
          encryptedData: gcmSeal(dek, text("written by 1.27"), SECRET_KEY),
          keyId: "1",
          encryptedDekSource: text(dek.toString("base64")),
          annotations: new Map(),
          dekSourceType: DekSourceType.AesGcmKey,
        });
        const read = await engine.decrypt(
          "secrets",
          Buffer.concat([text(PREFIX), legacy]),
          SECRET_KEY,
        );
        assert.equal(Buffer.from(read.plaintext).toString(), "written by 1.27");
        assert.equal(read.stale, true, "same key id, but the old DEK-source type");
      } finally {
        engine.close();
      }
    });
  });

  it("follows Status polling on its own: a new key id is picked up at the next poll", async () => {
    await withPlugin("polling", async (plugin, socket) => {
      const engine = await EncryptionEngine.start(kmsConfig(socket), {
        kmsV2Timing: { healthyPollMs: 50, unhealthyPollMs: 50, writeTtlMs: 180_000 },
      });
      try {
        assert.equal((await engine.encrypt("secrets", text("v"), SECRET_KEY)).writer.keyId, "1");
        plugin.keyId = "2";
        const deadline = Date.now() + 5_000;
        while (
          engine.transformerFor("secrets").currentWriter().keyId !== "2" &&
          Date.now() < deadline
        )
          await new Promise((resolve) => setTimeout(resolve, 20));
        assert.equal((await engine.encrypt("secrets", text("v"), SECRET_KEY)).writer.keyId, "2");
        assert.equal(plugin.calls.encrypt, 2, "one Encrypt per key id");
        assert.ok(plugin.calls.status >= 2, `Status was polled (${plugin.calls.status} calls)`);
      } finally {
        engine.close();
      }
    });
  });

  it("gives up on a hung plugin after the configured timeout", async () => {
    await withPlugin("hung", async (plugin, socket) => {
      plugin.hang = true;
      const config = parseEncryptionConfiguration(
        `apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers: [{ kms: { apiVersion: v2, name: kube-test, endpoint: "unix://${socket}", timeout: 300ms } }]\n`,
      );
      const started = Date.now();
      const engine = await EncryptionEngine.start(config, { kmsV2Timing: FAST });
      const waited = Date.now() - started;
      try {
        assert.ok(
          waited >= 250 && waited < 5_000,
          `the first check waited ${waited} ms for a 300 ms timeout`,
        );
        assert.match(engine.health()[0]?.detail ?? "", /Status failed with DEADLINE_EXCEEDED/);
      } finally {
        engine.close();
      }
    });
  });

  it("fails reads and writes with a clear error while the plugin has never been reachable, within the timeout", async () => {
    const socket = join(directory, "absent.sock");
    const started = Date.now();
    const engine = await EncryptionEngine.start(kmsConfig(socket), { kmsV2Timing: FAST });
    try {
      assert.ok(
        Date.now() - started < 10_000,
        "the start waited no longer than the configured timeout allows",
      );
      await assert.rejects(
        engine.encrypt("secrets", text("v"), SECRET_KEY),
        /has not passed a Status check since start/,
      );
      await assert.rejects(
        engine.decrypt(
          "secrets",
          Buffer.concat([text(PREFIX), Buffer.from([0x0a, 0x01, 0x00])]),
          SECRET_KEY,
        ),
        /has not passed a Status check since start/,
      );
    } finally {
      engine.close();
    }
  });
});

describe("rotation between providers", () => {
  it("identity first reads plaintext as current and kms values as stale; kms first writes kms and reads plaintext stale", async () => {
    await withPlugin("rotation", async (_plugin, socket) => {
      const plainFirst = await EncryptionEngine.start(kmsConfig(socket, "[identity, kms]"));
      const kmsFirst = await EncryptionEngine.start(kmsConfig(socket, "[kms, identity]"));
      try {
        const legacy = text("old plaintext");
        const plainRead = await plainFirst.decrypt("secrets", legacy, SECRET_KEY);
        assert.equal(plainRead.stale, false);
        assert.equal(
          (await plainFirst.encrypt("secrets", legacy, SECRET_KEY)).writer.provider,
          "identity",
        );

        const written = await kmsFirst.encrypt("secrets", text("new"), SECRET_KEY);
        assert.ok(
          Buffer.from(written.data).toString("latin1").startsWith(PREFIX),
          "kms first writes kms values",
        );
        const legacyRead = await kmsFirst.decrypt("secrets", legacy, SECRET_KEY);
        assert.equal(Buffer.from(legacyRead.plaintext).toString(), "old plaintext");
        assert.equal(legacyRead.stale, true, "plaintext read by the second provider is stale");
        const kmsRead = await plainFirst.decrypt("secrets", written.data, SECRET_KEY);
        assert.equal(Buffer.from(kmsRead.plaintext).toString(), "new");
        assert.equal(kmsRead.stale, true, "identity refused it and the later kms provider read it");
      } finally {
        plainFirst.close();
        kmsFirst.close();
      }
    });
  });

  it("migrates aescbc data to kms: the cbc value reads stale under a kms-first config", async () => {
    await withPlugin("migrate", async (_plugin, socket) => {
      const cbcOnly = await EncryptionEngine.start(kmsConfig(socket, "[cbc]"));
      const migrating = await EncryptionEngine.start(kmsConfig(socket, "[kms, cbc]"));
      try {
        const old = await cbcOnly.encrypt("secrets", text("legacy"), SECRET_KEY);
        assert.ok(
          Buffer.from(old.data).toString("latin1").startsWith("k8s:enc:aescbc:v1:old:"),
          "aescbc prefix",
        );
        const read = await migrating.decrypt("secrets", old.data, SECRET_KEY);
        assert.deepEqual(read.writer, { provider: "aescbc", keyId: "old" });
        assert.equal(read.stale, true);
      } finally {
        cbcOnly.close();
        migrating.close();
      }
    });
  });
});

describe("kms v1 (deprecated, behind allowKmsV1)", () => {
  function v1Config(socket: string) {
    return parseEncryptionConfiguration(
      `apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - kms: { name: legacy, endpoint: "unix://${socket}", cachesize: 10 }\n`,
      { allowKmsV1: true },
    );
  }

  it("makes one Encrypt per write, lays out len ‖ encrypted DEK ‖ GCM, and reads pre-1.25 CBC data as stale", async () => {
    await withPlugin("v1", async (plugin, socket) => {
      const engine = await EncryptionEngine.start(v1Config(socket));
      try {
        const prefix = "k8s:enc:kms:v1:legacy:";
        const stored = Buffer.from(
          (await engine.encrypt("secrets", text("pandas"), SECRET_KEY)).data,
        );
        await engine.encrypt("secrets", text("more"), SECRET_KEY);
        assert.equal(plugin.calls.v1Encrypt, 2, "a new DEK per write");
        assert.equal(stored.subarray(0, prefix.length).toString(), prefix);
        const body = stored.subarray(prefix.length);
        const dekLength = body.readUInt16BE(0);
        const dek = Buffer.from(body.subarray(2, 2 + dekLength).toString(), "base64");
        assert.equal(dek.length, 32);
        assert.equal(body.length, 2 + dekLength + 12 + "pandas".length + 16);
        const read = await engine.decrypt("secrets", stored, SECRET_KEY);
        assert.equal(Buffer.from(read.plaintext).toString(), "pandas");
        assert.equal(read.stale, false);
        assert.equal(plugin.calls.v1Decrypt, 0, "the written DEK is cached");

        // Data from before Kubernetes 1.25: the same framing around AES-CBC.
        const header = Buffer.alloc(2);
        header.writeUInt16BE(dekLength);
        const legacy = Buffer.concat([
          text(prefix),
          header,
          body.subarray(2, 2 + dekLength),
          cbcSeal(dek, text("from 1.24")),
        ]);
        const legacyRead = await engine.decrypt("secrets", legacy, SECRET_KEY);
        assert.equal(Buffer.from(legacyRead.plaintext).toString(), "from 1.24");
        assert.equal(legacyRead.stale, true, "CBC data is rewritten on the next update");
        await assert.rejects(engine.decrypt("secrets", stored, text("/registry/secrets/x/y")), {
          code: "DECRYPTION_FAILED",
        });
      } finally {
        engine.close();
      }
    });
  });
});
