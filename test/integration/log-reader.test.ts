/**
 * serve's stdout is its log. When whatever reads it goes away, the daemon must keep serving
 * kube-apiserver: a closed log pipe is not a reason to stop, nor to look stopped.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import {
  call,
  DaemonProcess,
  dial,
  newMasterKey,
  temporaryDirectory,
} from "../support/daemon-process.js";

describe("serve without its log reader", () => {
  let directory: Awaited<ReturnType<typeof temporaryDirectory>>;
  before(async () => {
    directory = await temporaryDirectory();
  });
  after(() => directory.remove());

  test("keeps serving after stdout's reader closes, says so once on stderr, and still stops cleanly", async () => {
    const socketPath = join(directory.path, "kms.sock");
    const daemon = await DaemonProcess.start({
      socketPath,
      env: { ENCRYPTION_MASTER_KEY: newMasterKey() },
    });
    const clients = dial(socketPath);
    try {
      daemon.child.stdout?.destroy();
      const lost = (line: string) => line.includes("the log on stdout cannot be written");
      // Debug-level calls write log lines until one meets the closed pipe.
      const deadline = Date.now() + 10_000;
      while (!daemon.lines.some(lost) && Date.now() < deadline) {
        await call(clients.field, "Seal", {
          uid: "u",
          records: [
            {
              workspace: "w",
              resource: "notes",
              record_id: "r",
              fields: { body: Buffer.from("x") },
            },
          ],
        });
      }
      assert.equal(daemon.lines.filter(lost).length, 1, daemon.lines.join("\n"));
      const status = await call<{ healthz: string }>(clients.kmsV2, "Status", {});
      assert.equal(status.healthz, "ok");
      const sealed = await call<{ ciphertext: Buffer; key_id: string }>(clients.kmsV2, "Encrypt", {
        uid: "u",
        plaintext: Buffer.from("still here"),
      });
      const opened = await call<{ plaintext: Buffer }>(clients.kmsV2, "Decrypt", {
        uid: "u",
        ciphertext: sealed.ciphertext,
        key_id: sealed.key_id,
      });
      assert.equal(opened.plaintext.toString(), "still here");
    } finally {
      clients.close();
    }
    assert.equal(await daemon.stop(), 0);
  });
});
