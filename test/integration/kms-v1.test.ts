import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, test } from "node:test";
import { status } from "@grpc/grpc-js";
import { call, callError, suiteDaemon } from "../support/daemon-process.js";

describe("KMS v1beta1 over the daemon's Unix socket", () => {
  const suite = suiteDaemon();

  test("Version answers v1beta1 with the runtime name and a semver runtime version", async () => {
    const answer = await call<{ version: string; runtime_name: string; runtime_version: string }>(
      suite.clients.kmsV1,
      "Version",
      { version: "v1beta1" },
    );
    assert.equal(answer.version, "v1beta1");
    assert.equal(answer.runtime_name, "kms-envelope");
    assert.match(answer.runtime_version, /^\d+\.\d+\.\d+/);
  });

  test("Encrypt then Decrypt returns the DEK, and the key id travels inside the ciphertext", async () => {
    for (const plain of [randomBytes(32), Buffer.alloc(0), randomBytes(1024 * 1024)]) {
      const { cipher } = await call<{ cipher: Buffer }>(suite.clients.kmsV1, "Encrypt", {
        version: "v1beta1",
        plain,
      });
      assert.equal(cipher[0], 0x01);
      assert.equal(
        cipher.subarray(3, 3 + suite.daemon.keyId.length).toString(),
        suite.daemon.keyId,
      );
      const { plain: opened } = await call<{ plain: Buffer }>(suite.clients.kmsV1, "Decrypt", {
        version: "v1beta1",
        cipher,
      });
      assert.deepEqual(opened, plain);
    }
  });

  test("a request for another API version is INVALID_ARGUMENT naming the supported one", async () => {
    const error = await callError(suite.clients.kmsV1, "Encrypt", {
      version: "v2",
      plain: randomBytes(32),
    });
    assert.equal(error.code, status.INVALID_ARGUMENT);
    assert.match(error.details, /send "v1beta1"/);
  });

  test("a v2 ciphertext does not decrypt through v1beta1, and tampering is INVALID_ARGUMENT", async () => {
    const v2 = await call<{ ciphertext: Buffer }>(suite.clients.kmsV2, "Encrypt", {
      plaintext: randomBytes(32),
      uid: "x",
    });
    const crossed = await callError(suite.clients.kmsV1, "Decrypt", {
      version: "v1beta1",
      cipher: v2.ciphertext,
    });
    assert.equal(crossed.code, status.INVALID_ARGUMENT);
    const { cipher } = await call<{ cipher: Buffer }>(suite.clients.kmsV1, "Encrypt", {
      version: "v1beta1",
      plain: randomBytes(32),
    });
    cipher[cipher.length - 1] = (cipher[cipher.length - 1] as number) ^ 0x80;
    const tampered = await callError(suite.clients.kmsV1, "Decrypt", {
      version: "v1beta1",
      cipher,
    });
    assert.equal(tampered.code, status.INVALID_ARGUMENT);
    assert.match(tampered.details, /^decryption failed/);
  });
});
