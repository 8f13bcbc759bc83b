import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import {
  call,
  DaemonProcess,
  dial,
  runCli,
  temporaryDirectory,
} from "../support/daemon-process.js";
import { type SoftHsm, startSoftHsm } from "../support/softhsm.js";

// keygen, serve and rotate with the pkcs11 provider, as the README shows them, against a SoftHSM2
// token of this test's own. The daemon is another process with its own SoftHSM2 module state:
// what the test changes on the token (a key's usage) reaches it through the token's files.

/** Polls `check` until it passes or `timeoutMs` runs out (then fails with its last error). */
async function eventually(check: () => Promise<void>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await check();
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

describe("keyring with the pkcs11 provider on SoftHSM2: keygen, serve, revocation, rotate", () => {
  let hsm: SoftHsm;
  let directory: Awaited<ReturnType<typeof temporaryDirectory>>;
  let keyring: string;
  let keyRef: string;
  let env: NodeJS.ProcessEnv;

  before(async () => {
    hsm = await startSoftHsm();
    await hsm.initToken("kmse");
    await hsm.generateKey("kmse", "kek");
    keyRef = hsm.keyRef("kmse", "kek");
    env = { SOFTHSM2_CONF: process.env.SOFTHSM2_CONF };
    directory = await temporaryDirectory();
    keyring = join(directory.path, "keyring.yaml");
  });

  after(async () => {
    await directory?.remove();
    await hsm?.stop();
  });

  test("keygen wraps a master key on the token; serve unwraps it there and encrypts; revoking the key's usage fails health, restoring it recovers; rotate moves the key id", async () => {
    const created = await runCli(
      ["keygen", "--provider", "pkcs11", "--key-ref", keyRef, "--keyring", keyring],
      env,
    );
    assert.equal(created.code, 0, created.stderr);
    assert.match(created.stdout, /^primary pkcs11:\S{16} {2}pkcs11 pkcs11:token=kmse;object=kek\?/);
    const text = await readFile(keyring, "utf8");
    assert.match(text, /provider: pkcs11\n/);
    // The wrapped key is the provider's own format: 0x01, IV, ciphertext and tag, 61 bytes.
    const wrapped = Buffer.from(/wrappedKey: (\S+)/.exec(text)?.[1] ?? "", "base64");
    assert.equal(wrapped.length, 61);
    assert.equal(wrapped[0], 0x01);

    const daemon = await DaemonProcess.start({
      socketPath: join(directory.path, "kms.sock"),
      env,
      args: [
        "--keyring",
        keyring,
        "--health-interval",
        "300ms",
        "--keyring-poll-interval",
        "200ms",
      ],
    });
    const clients = dial(daemon.socketPath);
    try {
      const seed = randomBytes(32);
      const sealed = await call<{ ciphertext: Buffer; key_id: string }>(clients.kmsV2, "Encrypt", {
        plaintext: seed,
        uid: "p1",
      });
      assert.equal(sealed.key_id, daemon.keyId);
      const opened = await call<{ plaintext: Buffer }>(clients.kmsV2, "Decrypt", {
        ciphertext: sealed.ciphertext,
        key_id: sealed.key_id,
        uid: "p2",
      });
      assert.deepEqual(opened.plaintext, seed);

      hsm.admin.setUsage("kmse", "kek", false);
      try {
        await eventually(async () => {
          const answer = await call<{ healthz: string }>(clients.kmsV2, "Status", {});
          assert.match(
            answer.healthz,
            /custody provider failing \(user\): key object "kek" on token "kmse" may not decrypt \(CKA_DECRYPT is false\)/,
          );
        });
      } finally {
        hsm.admin.setUsage("kmse", "kek", true);
      }
      await eventually(async () => {
        const answer = await call<{ healthz: string }>(clients.kmsV2, "Status", {});
        assert.equal(answer.healthz, "ok");
      });

      const rotated = await runCli(["rotate", "--keyring", keyring], env);
      assert.equal(rotated.code, 0, rotated.stderr);
      const newKeyId = /^primary (pkcs11:\S{16})/m.exec(rotated.stdout)?.[1];
      assert.ok(newKeyId !== undefined && newKeyId !== sealed.key_id, rotated.stdout);
      await eventually(async () => {
        const answer = await call<{ key_id: string }>(clients.kmsV2, "Status", {});
        assert.equal(answer.key_id, newKeyId);
      });
      // What the first version sealed still opens.
      const again = await call<{ plaintext: Buffer }>(clients.kmsV2, "Decrypt", {
        ciphertext: sealed.ciphertext,
        key_id: sealed.key_id,
        uid: "p3",
      });
      assert.deepEqual(again.plaintext, seed);
    } finally {
      clients.close();
      assert.equal(await daemon.stop(), 0);
    }
  });
});
