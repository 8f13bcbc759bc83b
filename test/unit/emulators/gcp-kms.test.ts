import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import { KeyManagementServiceClient } from "@google-cloud/kms";
import { status } from "@grpc/grpc-js";
import { crc32c } from "../../../providers/crc32c.js";
import { GcpKmsEmulator } from "../../emulators/gcp-kms/server.js";

// The raw official client against the emulator: what the emulator promises the provider tests.
const CALL = { timeout: 2_000, retry: null };
const PLAINTEXT = Buffer.from("a 32-byte master key stand-in...");
const AAD = Buffer.from("kms-envelope/master-key/test");

let emulator: GcpKmsEmulator;
let client: KeyManagementServiceClient;
let counter = 0;

before(async () => {
  emulator = await GcpKmsEmulator.start();
  client = new KeyManagementServiceClient(emulator.clientOptions());
});

after(async () => {
  await client.close();
  await emulator.close();
});

afterEach(() => emulator.clearFaults());

function newKey(): { keyRef: string; version1: string } {
  counter += 1;
  const keyRef = `projects/emulator-test/locations/global/keyRings/ring/cryptoKeys/key-${counter}`;
  return { keyRef, version1: emulator.createKey(keyRef) };
}

async function codeOf(promise: Promise<unknown>): Promise<{ code: number; details: string }> {
  try {
    await promise;
  } catch (error) {
    const { code, details } = error as { code: number; details: string };
    return { code, details };
  }
  assert.fail("expected the call to fail");
}

function checksum(value: number): { value: number } {
  return { value };
}

describe("GcpKmsEmulator (google.cloud.kms.v1.KeyManagementService over gRPC)", () => {
  test("Encrypt names the primary version used and always returns ciphertext_crc32c", async () => {
    const { keyRef, version1 } = newKey();
    const [response] = await client.encrypt({ name: keyRef, plaintext: PLAINTEXT }, CALL);
    assert.equal(response.name, version1);
    const ciphertext = response.ciphertext as Buffer;
    assert.equal(Number(response.ciphertextCrc32c?.value), crc32c(ciphertext));
    assert.equal(response.verifiedPlaintextCrc32c, false, "no checksum sent, none verified");
    assert.equal(response.verifiedAdditionalAuthenticatedDataCrc32c, false);
  });

  test("Encrypt verifies the request checksums it is sent and says so", async () => {
    const { keyRef } = newKey();
    const [response] = await client.encrypt(
      {
        name: keyRef,
        plaintext: PLAINTEXT,
        additionalAuthenticatedData: AAD,
        plaintextCrc32c: checksum(crc32c(PLAINTEXT)),
        additionalAuthenticatedDataCrc32c: checksum(crc32c(AAD)),
      },
      CALL,
    );
    assert.equal(response.verifiedPlaintextCrc32c, true);
    assert.equal(response.verifiedAdditionalAuthenticatedDataCrc32c, true);
    const entry = emulator.log.at(-1);
    assert.deepEqual(entry?.sentChecksums, { plaintext: true, ciphertext: false, aad: true });
  });

  test("a request checksum that does not match is INVALID_ARGUMENT in the service's words", async () => {
    const { keyRef } = newKey();
    const wrongPlaintext = await codeOf(
      client.encrypt(
        { name: keyRef, plaintext: PLAINTEXT, plaintextCrc32c: checksum(crc32c(PLAINTEXT) ^ 1) },
        CALL,
      ),
    );
    assert.equal(wrongPlaintext.code, status.INVALID_ARGUMENT);
    assert.match(
      wrongPlaintext.details,
      /^The checksum in field plaintext_crc32c did not match the data in field plaintext\.$/,
    );
    const [encrypted] = await client.encrypt({ name: keyRef, plaintext: PLAINTEXT }, CALL);
    const ciphertext = encrypted.ciphertext as Buffer;
    const wrongCiphertext = await codeOf(
      client.decrypt({ name: keyRef, ciphertext, ciphertextCrc32c: checksum(0) }, CALL),
    );
    assert.equal(wrongCiphertext.code, status.INVALID_ARGUMENT);
    assert.match(wrongCiphertext.details, /ciphertext_crc32c/);
  });

  test("Decrypt picks the version from the ciphertext and fills plaintext_crc32c", async () => {
    const { keyRef } = newKey();
    const [old] = await client.encrypt({ name: keyRef, plaintext: PLAINTEXT }, CALL);
    const version2 = emulator.addVersion(keyRef);
    const [fresh] = await client.encrypt({ name: keyRef, plaintext: PLAINTEXT }, CALL);
    assert.equal(fresh.name, version2);
    const [fromOld] = await client.decrypt({ name: keyRef, ciphertext: old.ciphertext }, CALL);
    assert.deepEqual(Buffer.from(fromOld.plaintext as Buffer), PLAINTEXT);
    assert.equal(fromOld.usedPrimary, false);
    assert.equal(Number(fromOld.plaintextCrc32c?.value), crc32c(PLAINTEXT));
    const [fromNew] = await client.decrypt({ name: keyRef, ciphertext: fresh.ciphertext }, CALL);
    assert.equal(fromNew.usedPrimary, true);
  });

  test("AES-256-GCM authenticates the AAD and the key: a mismatch is INVALID_ARGUMENT", async () => {
    const { keyRef } = newKey();
    const other = newKey();
    const [encrypted] = await client.encrypt(
      { name: keyRef, plaintext: PLAINTEXT, additionalAuthenticatedData: AAD },
      CALL,
    );
    const wrongAad = await codeOf(
      client.decrypt({ name: keyRef, ciphertext: encrypted.ciphertext }, CALL),
    );
    assert.equal(wrongAad.code, status.INVALID_ARGUMENT);
    assert.match(
      wrongAad.details,
      /^Decryption failed: verify that 'name' refers to the correct CryptoKey\.$/,
    );
    const wrongKey = await codeOf(
      client.decrypt(
        { name: other.keyRef, ciphertext: encrypted.ciphertext, additionalAuthenticatedData: AAD },
        CALL,
      ),
    );
    assert.equal(wrongKey.code, status.INVALID_ARGUMENT);
    const garbage = await codeOf(
      client.decrypt({ name: keyRef, ciphertext: Buffer.from("not a ciphertext") }, CALL),
    );
    assert.equal(garbage.code, status.INVALID_ARGUMENT);
    assert.match(garbage.details, /the ciphertext is invalid/);
  });

  test("a disabled or destroyed version is FAILED_PRECONDITION naming version and state", async () => {
    const { keyRef, version1 } = newKey();
    const [encrypted] = await client.encrypt({ name: keyRef, plaintext: PLAINTEXT }, CALL);
    emulator.disableVersion(version1);
    for (const call of [
      client.encrypt({ name: keyRef, plaintext: PLAINTEXT }, CALL),
      client.decrypt({ name: keyRef, ciphertext: encrypted.ciphertext }, CALL),
    ]) {
      const failure = await codeOf(call);
      assert.equal(failure.code, status.FAILED_PRECONDITION);
      assert.equal(failure.details, `${version1} is not enabled, current state is: DISABLED.`);
    }
    const [key] = await client.getCryptoKey({ name: keyRef }, CALL);
    assert.equal(key.primary?.state, "DISABLED");
    emulator.enableVersion(version1);
    await client.decrypt({ name: keyRef, ciphertext: encrypted.ciphertext }, CALL);
    emulator.destroyVersion(version1);
    const destroyed = await codeOf(
      client.decrypt({ name: keyRef, ciphertext: encrypted.ciphertext }, CALL),
    );
    assert.equal(destroyed.code, status.FAILED_PRECONDITION);
    assert.match(destroyed.details, /current state is: DESTROYED\.$/);
    assert.throws(() => emulator.enableVersion(version1), /destroyed/);
  });

  test("GetCryptoKey and GetCryptoKeyVersion describe the key; unknown names are NOT_FOUND", async () => {
    const { keyRef, version1 } = newKey();
    const [key] = await client.getCryptoKey({ name: keyRef }, CALL);
    assert.equal(key.name, keyRef);
    assert.equal(key.purpose, "ENCRYPT_DECRYPT");
    assert.equal(key.primary?.name, version1);
    assert.equal(key.primary?.state, "ENABLED");
    const [version] = await client.getCryptoKeyVersion({ name: version1 }, CALL);
    assert.equal(version.algorithm, "GOOGLE_SYMMETRIC_ENCRYPTION");
    const missing = await codeOf(client.getCryptoKey({ name: `${keyRef}-missing` }, CALL));
    assert.equal(missing.code, status.NOT_FOUND);
  });

  test("methods outside Encrypt/Decrypt/GetCryptoKey[Version] are UNIMPLEMENTED", async () => {
    const failure = await codeOf(
      client.getKeyRing({ name: "projects/p/locations/global/keyRings/ring" }, CALL),
    );
    assert.equal(failure.code, status.UNIMPLEMENTED);
  });

  test("denyAccess answers PERMISSION_DENIED naming the missing permission", async () => {
    const { keyRef } = newKey();
    emulator.denyAccess(["Decrypt"]);
    const [encrypted] = await client.encrypt({ name: keyRef, plaintext: PLAINTEXT }, CALL);
    const denied = await codeOf(
      client.decrypt({ name: keyRef, ciphertext: encrypted.ciphertext }, CALL),
    );
    assert.equal(denied.code, status.PERMISSION_DENIED);
    assert.equal(
      denied.details,
      `Permission 'cloudkms.cryptoKeyVersions.useToDecrypt' denied on resource '${keyRef}' (or it may not exist).`,
    );
  });

  test("scripted faults play in order and are counted per method", async () => {
    const { keyRef } = newKey();
    const before = { ...emulator.calls };
    emulator.throttleNext(1);
    emulator.failNext(1, "UNAVAILABLE");
    emulator.failNext(1, "INTERNAL");
    const codes = [];
    for (let index = 0; index < 4; index += 1) {
      codes.push(
        await client.encrypt({ name: keyRef, plaintext: PLAINTEXT }, CALL).then(
          () => status.OK,
          (error: { code: number }) => error.code,
        ),
      );
    }
    assert.deepEqual(codes, [
      status.RESOURCE_EXHAUSTED,
      status.UNAVAILABLE,
      status.INTERNAL,
      status.OK,
    ]);
    assert.equal(emulator.calls.Encrypt - before.Encrypt, 4);
    assert.equal(emulator.calls.Decrypt - before.Decrypt, 0);
  });

  test("corruptions flip a byte without fixing its checksum, or drop a verified flag", async () => {
    const { keyRef } = newKey();
    emulator.corruptNext("ciphertext");
    const [damaged] = await client.encrypt({ name: keyRef, plaintext: PLAINTEXT }, CALL);
    assert.notEqual(crc32c(damaged.ciphertext as Buffer), Number(damaged.ciphertextCrc32c?.value));
    emulator.corruptNext("verifiedPlaintextCrc32c");
    const [unverified] = await client.encrypt(
      { name: keyRef, plaintext: PLAINTEXT, plaintextCrc32c: checksum(crc32c(PLAINTEXT)) },
      CALL,
    );
    assert.equal(unverified.verifiedPlaintextCrc32c, false);
    const [clean] = await client.encrypt({ name: keyRef, plaintext: PLAINTEXT }, CALL);
    emulator.corruptNext("plaintext");
    const [decrypted] = await client.decrypt({ name: keyRef, ciphertext: clean.ciphertext }, CALL);
    assert.notEqual(
      crc32c(decrypted.plaintext as Buffer),
      Number(decrypted.plaintextCrc32c?.value),
    );
    emulator.corruptNext("requestPlaintext");
    const damagedRequest = await codeOf(
      client.encrypt(
        { name: keyRef, plaintext: PLAINTEXT, plaintextCrc32c: checksum(crc32c(PLAINTEXT)) },
        CALL,
      ),
    );
    assert.equal(damagedRequest.code, status.INVALID_ARGUMENT);
  });

  test("a delay holds the answer until the client's deadline", async () => {
    const { keyRef } = newKey();
    emulator.setDelay(2_000, ["GetCryptoKey"]);
    const started = Date.now();
    const late = await codeOf(client.getCryptoKey({ name: keyRef }, { timeout: 100, retry: null }));
    assert.equal(late.code, status.DEADLINE_EXCEEDED);
    assert.ok(Date.now() - started < 1_500);
  });
});
