import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, test } from "node:test";
import { status } from "@grpc/grpc-js";
import { call, callError, callRawError, suiteDaemon } from "../support/daemon-process.js";

interface StatusResponse {
  version: string;
  healthz: string;
  key_id: string;
}
interface EncryptResponse {
  ciphertext: Buffer;
  key_id: string;
  annotations: Record<string, Buffer>;
}

describe("KMS v2 over the daemon's Unix socket", () => {
  const suite = suiteDaemon({ args: ["--max-request-bytes", String(2 * 1024 * 1024)] });

  const encrypt = (plaintext: Buffer) =>
    call<EncryptResponse>(suite.clients.kmsV2, "Encrypt", { plaintext, uid: "uid-1" });
  const decrypt = (ciphertext: Uint8Array, keyId: string) =>
    call<{ plaintext: Buffer }>(suite.clients.kmsV2, "Decrypt", {
      ciphertext,
      key_id: keyId,
      uid: "uid-2",
      annotations: {},
    });

  test("Status reports version v2, healthz ok and the primary key id", async () => {
    const answer = await call<StatusResponse>(suite.clients.kmsV2, "Status", {});
    assert.deepEqual(answer, { version: "v2", healthz: "ok", key_id: suite.daemon.keyId });
    assert.match(answer.key_id, /^local:[A-Za-z0-9_-]{16}$/);
  });

  test("Encrypt returns the Status key id, no annotations, and a ciphertext under 1 KiB for a 32-byte seed", async () => {
    const seed = randomBytes(32);
    const answer = await encrypt(seed);
    assert.equal(answer.key_id, suite.daemon.keyId);
    assert.deepEqual(answer.annotations, {});
    assert.ok(answer.ciphertext.length > 0 && answer.ciphertext.length <= 1024);
    // 0x01 || lp(key id) || nonce(24) || MAC(16) || ciphertext(32)
    assert.equal(answer.ciphertext.length, 1 + 2 + suite.daemon.keyId.length + 24 + 16 + 32);
    assert.equal(answer.ciphertext[0], 0x01);
  });

  test("Decrypt returns exactly what Encrypt sealed, and two encryptions of one seed differ", async () => {
    const seed = randomBytes(32);
    const first = await encrypt(seed);
    const second = await encrypt(seed);
    assert.notDeepEqual(first.ciphertext, second.ciphertext);
    assert.deepEqual((await decrypt(first.ciphertext, first.key_id)).plaintext, seed);
    assert.deepEqual((await decrypt(second.ciphertext, second.key_id)).plaintext, seed);
  });

  test("an empty plaintext and a 1 MiB plaintext both round-trip", async () => {
    for (const plaintext of [Buffer.alloc(0), randomBytes(1024 * 1024)]) {
      const sealed = await encrypt(plaintext);
      assert.deepEqual((await decrypt(sealed.ciphertext, sealed.key_id)).plaintext, plaintext);
    }
  });

  test("64 concurrent callers each get their own plaintext back", async () => {
    const callers = Array.from({ length: 64 }, async () => {
      for (let round = 0; round < 10; round += 1) {
        const seed = randomBytes(32);
        const sealed = await encrypt(seed);
        assert.deepEqual((await decrypt(sealed.ciphertext, sealed.key_id)).plaintext, seed);
      }
    });
    await Promise.all(callers);
  });

  test("a request larger than --max-request-bytes is refused with RESOURCE_EXHAUSTED", async () => {
    const error = await callError(suite.clients.kmsV2, "Encrypt", {
      plaintext: randomBytes(3 * 1024 * 1024),
      uid: "big",
    });
    assert.equal(error.code, status.RESOURCE_EXHAUSTED);
  });

  test("garbage protobuf is INVALID_ARGUMENT, not INTERNAL", async () => {
    const answer = await callRawError(
      suite.clients.kmsV2,
      "/v2.KeyManagementService/Decrypt",
      Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]),
    );
    assert.equal(answer.code, status.INVALID_ARGUMENT);
    assert.match(answer.details, /not a valid protobuf message/);
  });

  test("empty, truncated and wrong-format ciphertexts are INVALID_ARGUMENT", async () => {
    const sealed = await encrypt(randomBytes(32));
    const cases: [Buffer, RegExp][] = [
      [Buffer.alloc(0), /ciphertext is empty/],
      [sealed.ciphertext.subarray(0, 2), /truncated length prefix|runs past the end/],
      [sealed.ciphertext.subarray(0, 30), /length prefix runs past the end|shorter than 40 bytes/],
      [sealed.ciphertext.subarray(0, sealed.ciphertext.length - 40), /shorter than 40 bytes/],
      [
        Buffer.concat([Buffer.from([0x02]), sealed.ciphertext.subarray(1)]),
        /unknown format byte 0x02/,
      ],
    ];
    for (const [ciphertext, message] of cases) {
      const error = await callError(suite.clients.kmsV2, "Decrypt", {
        ciphertext,
        key_id: sealed.key_id,
      });
      assert.equal(error.code, status.INVALID_ARGUMENT, `${ciphertext.toString("hex")}`);
      assert.match(error.details, message);
    }
  });

  test("a flipped byte in the nonce, MAC or ciphertext body is the one generic INVALID_ARGUMENT", async () => {
    const sealed = await encrypt(randomBytes(32));
    const sealedStart = 1 + 2 + sealed.key_id.length;
    const positions = {
      nonce: sealedStart + 3,
      mac: sealedStart + 24 + 5,
      body: sealed.ciphertext.length - 1,
    };
    for (const [part, position] of Object.entries(positions)) {
      const tampered = Buffer.from(sealed.ciphertext);
      tampered[position] = (tampered[position] as number) ^ 0x01;
      const error = await callError(suite.clients.kmsV2, "Decrypt", {
        ciphertext: tampered,
        key_id: sealed.key_id,
      });
      assert.equal(error.code, status.INVALID_ARGUMENT, part);
      assert.equal(
        error.details,
        "decryption failed: the value is corrupt or does not belong here",
        part,
      );
    }
  });

  test("a flipped key-id byte no longer matches the request key_id: INVALID_ARGUMENT", async () => {
    const sealed = await encrypt(randomBytes(32));
    const tampered = Buffer.from(sealed.ciphertext);
    tampered[5] = (tampered[5] as number) ^ 0x01;
    const error = await callError(suite.clients.kmsV2, "Decrypt", {
      ciphertext: tampered,
      key_id: sealed.key_id,
    });
    assert.equal(error.code, status.INVALID_ARGUMENT);
    assert.match(error.details, /key_id does not match/);
  });

  test("a ciphertext under a key id this daemon does not hold is NOT_FOUND", async () => {
    const sealed = await encrypt(randomBytes(32));
    const foreignKeyId = "local:AAAAAAAAAAAAAAAA";
    const foreign = Buffer.concat([
      Buffer.from([0x01, 0x00, foreignKeyId.length]),
      Buffer.from(foreignKeyId),
      sealed.ciphertext.subarray(1 + 2 + sealed.key_id.length),
    ]);
    const error = await callError(suite.clients.kmsV2, "Decrypt", {
      ciphertext: foreign,
      key_id: foreignKeyId,
    });
    assert.equal(error.code, status.NOT_FOUND);
    assert.match(error.details, /unknown key id "local:AAAAAAAAAAAAAAAA"/);
  });

  test("a missing or mismatched key_id in Decrypt is INVALID_ARGUMENT", async () => {
    const sealed = await encrypt(randomBytes(32));
    const missing = await callError(suite.clients.kmsV2, "Decrypt", {
      ciphertext: sealed.ciphertext,
      key_id: "",
    });
    assert.equal(missing.code, status.INVALID_ARGUMENT);
    assert.match(missing.details, /key_id is required/);
    const wrong = await callError(suite.clients.kmsV2, "Decrypt", {
      ciphertext: sealed.ciphertext,
      key_id: "local:BBBBBBBBBBBBBBBB",
    });
    assert.equal(wrong.code, status.INVALID_ARGUMENT);
  });

  test("a v1beta1 ciphertext does not decrypt through the v2 API (contexts differ)", async () => {
    const v1 = await call<{ cipher: Buffer }>(suite.clients.kmsV1, "Encrypt", {
      version: "v1beta1",
      plain: randomBytes(32),
    });
    const error = await callError(suite.clients.kmsV2, "Decrypt", {
      ciphertext: v1.cipher,
      key_id: suite.daemon.keyId,
    });
    assert.equal(error.code, status.INVALID_ARGUMENT);
    assert.match(error.details, /decryption failed/);
  });

  test("after every refusal the daemon is still serving and healthy", async () => {
    const answer = await call<StatusResponse>(suite.clients.kmsV2, "Status", {});
    assert.equal(answer.healthz, "ok");
    assert.equal(suite.daemon.child.exitCode, null);
  });
});
