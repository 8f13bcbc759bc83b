import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { type ServiceError, status } from "@grpc/grpc-js";
import {
  call,
  DaemonProcess,
  dial,
  newMasterKey,
  temporaryDirectory,
} from "../support/daemon-process.js";

describe("SIGTERM during load", () => {
  let directory: Awaited<ReturnType<typeof temporaryDirectory>>;
  const env = { ENCRYPTION_MASTER_KEY: newMasterKey() };

  before(async () => {
    directory = await temporaryDirectory();
  });
  after(() => directory.remove());

  test("drains accepted calls, refuses new ones as UNAVAILABLE, exits 0, and every answered ciphertext decrypts", async () => {
    const socketPath = join(directory.path, "kms.sock");
    const daemon = await DaemonProcess.start({ socketPath, env });
    const clients = dial(socketPath);
    const answered: { seed: Buffer; ciphertext: Buffer; keyId: string }[] = [];
    const refusals: ServiceError[] = [];
    let stop = false;
    const workers = Array.from({ length: 32 }, async () => {
      while (!stop) {
        const seed = randomBytes(32);
        try {
          const sealed = await call<{ ciphertext: Buffer; key_id: string }>(
            clients.kmsV2,
            "Encrypt",
            { plaintext: seed, uid: "load" },
          );
          answered.push({ seed, ciphertext: sealed.ciphertext, keyId: sealed.key_id });
        } catch (error) {
          refusals.push(error as ServiceError);
          stop = true;
        }
      }
    });
    await new Promise((resolve) => setTimeout(resolve, 500));
    const exitCode = daemon.stop("SIGTERM");
    const stopAfter = setTimeout(() => (stop = true), 3000);
    await Promise.all(workers);
    clearTimeout(stopAfter);
    clients.close();
    assert.equal(await exitCode, 0);
    assert.ok(answered.length > 100, `load ran (${answered.length} calls answered)`);
    for (const refusal of refusals) {
      assert.equal(
        refusal.code,
        status.UNAVAILABLE,
        `refused calls are UNAVAILABLE, got ${refusal.code} ${refusal.details}`,
      );
    }
    assert.ok(daemon.lines.some((line) => line.includes("draining in-flight calls")));

    // Restart with the same key: every ciphertext the daemon answered before exiting still opens.
    const restarted = await DaemonProcess.start({ socketPath, env });
    const check = dial(socketPath);
    for (const entry of answered) {
      const opened = await call<{ plaintext: Buffer }>(check.kmsV2, "Decrypt", {
        ciphertext: entry.ciphertext,
        key_id: entry.keyId,
        uid: "verify",
      });
      assert.deepEqual(opened.plaintext, entry.seed);
    }
    check.close();
    assert.equal(await restarted.stop(), 0);
  });
});
