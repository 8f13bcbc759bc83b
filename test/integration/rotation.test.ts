import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { status } from "@grpc/grpc-js";
import {
  call,
  callError,
  DaemonProcess,
  dial,
  newMasterKey,
  temporaryDirectory,
} from "../support/daemon-process.js";

/** Starts a daemon, runs `work` against it, stops it. */
async function withDaemon<T>(
  socketPath: string,
  env: NodeJS.ProcessEnv,
  work: (daemon: DaemonProcess, clients: ReturnType<typeof dial>) => Promise<T>,
): Promise<T> {
  const daemon = await DaemonProcess.start({ socketPath, env });
  const clients = dial(socketPath);
  try {
    return await work(daemon, clients);
  } finally {
    clients.close();
    assert.equal(await daemon.stop(), 0);
  }
}

describe("master-key rotation by restart (local provider)", () => {
  let directory: Awaited<ReturnType<typeof temporaryDirectory>>;
  let socketPath: string;
  const oldKey = newMasterKey();
  const newKey = newMasterKey();
  const seed = randomBytes(32);
  const field = {
    workspace: "ws",
    resource: "credentials",
    record_id: "cred-1",
    fields: { secret: Buffer.from("hunter2") },
  };
  let old: {
    keyId: string;
    v2: Buffer;
    v1: Buffer;
    field: {
      workspace: string;
      resource: string;
      record_id: string;
      fields: Record<string, string>;
    };
  };

  before(async () => {
    directory = await temporaryDirectory();
    socketPath = join(directory.path, "kms.sock");
    old = await withDaemon(
      socketPath,
      { ENCRYPTION_MASTER_KEY: oldKey },
      async (daemon, clients) => {
        const v2 = await call<{ ciphertext: Buffer }>(clients.kmsV2, "Encrypt", {
          plaintext: seed,
          uid: "a",
        });
        const v1 = await call<{ cipher: Buffer }>(clients.kmsV1, "Encrypt", {
          version: "v1beta1",
          plain: seed,
        });
        const sealed = await call<{ records: (typeof old)["field"][] }>(clients.field, "Seal", {
          records: [field],
        });
        return {
          keyId: daemon.keyId,
          v2: v2.ciphertext,
          v1: v1.cipher,
          field: sealed.records[0] as (typeof old)["field"],
        };
      },
    );
  });

  after(() => directory.remove());

  test("with the old key moved to _PREVIOUS the key id changes and old values still open", async () => {
    await withDaemon(
      socketPath,
      { ENCRYPTION_MASTER_KEY: newKey, ENCRYPTION_MASTER_KEY_PREVIOUS: ` ${oldKey} ,` },
      async (daemon, clients) => {
        const statusAnswer = await call<{ key_id: string }>(clients.kmsV2, "Status", {});
        assert.notEqual(statusAnswer.key_id, old.keyId);
        assert.equal(statusAnswer.key_id, daemon.keyId);
        const fresh = await call<{ key_id: string }>(clients.kmsV2, "Encrypt", {
          plaintext: seed,
          uid: "b",
        });
        assert.equal(fresh.key_id, daemon.keyId);
        assert.deepEqual(
          (
            await call<{ plaintext: Buffer }>(clients.kmsV2, "Decrypt", {
              ciphertext: old.v2,
              key_id: old.keyId,
            })
          ).plaintext,
          seed,
        );
        assert.deepEqual(
          (
            await call<{ plain: Buffer }>(clients.kmsV1, "Decrypt", {
              version: "v1beta1",
              cipher: old.v1,
            })
          ).plain,
          seed,
        );
        const opened = await call<{
          records: { fields: Record<string, Buffer> }[];
          stale: boolean;
        }>(clients.field, "Open", { records: [old.field] });
        assert.equal(opened.stale, true, "values under a previous key are reported stale");
        assert.deepEqual(opened.records[0]?.fields, field.fields);
        // What the rewrap-pending alert reads: reads under a key id that is not the primary one.
        const metrics = await (await fetch(`http://${daemon.httpAddress}/metrics`)).text();
        assert.match(metrics, /^kms_envelope_field_stale_opens_total 1$/m);
        const hash = (keyId: string) =>
          `sha256:${createHash("sha256").update(keyId).digest("hex")}`;
        assert.ok(
          metrics.includes(
            `apiserver_envelope_encryption_key_id_hash_last_timestamp_seconds{transformation_type="from_storage",provider_name="local",key_id_hash="${hash(old.keyId)}"}`,
          ),
        );
        assert.ok(metrics.includes(`key_id_hash="${hash(daemon.keyId)}"} 1`), "primary_key_info");
      },
    );
  });

  test("once the old key is dropped, its ciphertexts are NOT_FOUND, never a wrong plaintext", async () => {
    await withDaemon(socketPath, { ENCRYPTION_MASTER_KEY: newKey }, async (_daemon, clients) => {
      const v2 = await callError(clients.kmsV2, "Decrypt", {
        ciphertext: old.v2,
        key_id: old.keyId,
      });
      assert.equal(v2.code, status.NOT_FOUND);
      const v1 = await callError(clients.kmsV1, "Decrypt", { version: "v1beta1", cipher: old.v1 });
      assert.equal(v1.code, status.NOT_FOUND);
    });
  });
});
