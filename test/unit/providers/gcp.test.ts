import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, afterEach, before, describe, test } from "node:test";
import { grpc } from "google-gax";
import {
  createProvider,
  GcpKmsProvider,
  type GcpKmsProviderOptions,
} from "../../../providers/gcp.js";
import { clientOptionsForEndpoint, gcpCredentialSource } from "../../../providers/gcp-endpoint.js";
import { ProviderError, type ProviderErrorClass } from "../../../providers/types.js";
import { KmsEnvelopeError } from "../../../src/errors.js";
import { testTls } from "../../emulators/azure-key-vault/tls.js";
import type { KmsMethod } from "../../emulators/gcp-kms/faults.js";
import { MetadataServer } from "../../emulators/gcp-kms/metadata.js";
import { GcpKmsEmulator } from "../../emulators/gcp-kms/server.js";

// The real @google-cloud/kms client against the local gRPC emulator (CLOUD-PROTOCOLS.md B.3).
let emulator: GcpKmsEmulator;
const open: GcpKmsProvider[] = [];
let counter = 0;

before(async () => {
  emulator = await GcpKmsEmulator.start();
});

after(async () => {
  await emulator.close();
});

afterEach(async () => {
  emulator.clearFaults();
  await Promise.all(open.splice(0).map((provider) => provider.close()));
});

const CONTEXT = { keyId: "gcp:v1-test" };

/** A fresh CryptoKey in the emulator and a provider for it (fast back-off, short deadline). */
function setup(options: Partial<GcpKmsProviderOptions> = {}) {
  counter += 1;
  const keyRef = `projects/test-project/locations/global/keyRings/ring/cryptoKeys/key-${counter}`;
  const version1 = emulator.createKey(keyRef);
  const provider = new GcpKmsProvider({
    keyRef,
    client: emulator.clientOptions(),
    timeoutMs: 2_000,
    retryDelayMs: 5,
    ...options,
  });
  open.push(provider);
  return { keyRef, version1, provider };
}

/** Calls of `method` the emulator received for `keyRef`. */
function callsFor(keyRef: string, method: KmsMethod) {
  return emulator.log.filter((entry) => entry.name === keyRef && entry.method === method);
}

async function failure(promise: Promise<unknown>): Promise<ProviderError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof ProviderError, `expected a ProviderError, got ${String(error)}`);
    return error;
  }
  assert.fail("expected the call to fail");
}

async function rejectsAs(
  promise: Promise<unknown>,
  errorClass: ProviderErrorClass,
  message: RegExp,
): Promise<ProviderError> {
  const error = await failure(promise);
  assert.equal(error.errorClass, errorClass, error.message);
  assert.match(error.message, message);
  return error;
}

describe("GcpKmsProvider", () => {
  test("wrapKey then unwrapKey returns the same 16, 32 and 64-byte keys", async () => {
    for (const keyBytes of [16, 32, 64]) {
      const { provider } = setup({ keyBytes });
      const key = randomBytes(keyBytes);
      const wrapped = await provider.wrapKey(key, CONTEXT);
      assert.ok(!Buffer.from(wrapped).includes(key), "the wrapped key does not contain the key");
      assert.deepEqual(Buffer.from(await provider.unwrapKey(wrapped, CONTEXT)), key);
    }
  });

  test("the wrapped key is bound to its key id: unwrapping under another key id is corrupt", async () => {
    const { keyRef, provider } = setup();
    const wrapped = await provider.wrapKey(randomBytes(32), CONTEXT);
    await rejectsAs(
      provider.unwrapKey(wrapped, { keyId: "gcp:v2-other" }),
      "corrupt",
      /wrapped key for gcp:v2-other does not decrypt under .*wrapped for another key id/,
    );
    assert.equal(callsFor(keyRef, "Decrypt").length, 1, "an AAD mismatch is not retried");
  });

  test("bytes that are not a Cloud KMS ciphertext are corrupt", async () => {
    const { provider } = setup();
    await rejectsAs(provider.unwrapKey(randomBytes(60), CONTEXT), "corrupt", /does not decrypt/);
  });

  test("every request carries CRC32C checksums of its data and AAD, verified by the server", async () => {
    const { keyRef, provider } = setup();
    await provider.unwrapKey(await provider.wrapKey(randomBytes(32), CONTEXT), CONTEXT);
    const [encrypt] = callsFor(keyRef, "Encrypt");
    const [decrypt] = callsFor(keyRef, "Decrypt");
    assert.deepEqual(encrypt?.sentChecksums, { plaintext: true, ciphertext: false, aad: true });
    assert.deepEqual(decrypt?.sentChecksums, { plaintext: false, ciphertext: true, aad: true });
    assert.equal(encrypt?.code, "OK");
    assert.equal(decrypt?.code, "OK");
  });

  test("a ciphertext corrupted in the Encrypt response is detected and retried; a clean retry succeeds", async () => {
    const { keyRef, provider } = setup();
    const key = randomBytes(32);
    emulator.corruptNext("ciphertext", 1);
    const wrapped = await provider.wrapKey(key, CONTEXT);
    assert.equal(callsFor(keyRef, "Encrypt").length, 2);
    assert.deepEqual(Buffer.from(await provider.unwrapKey(wrapped, CONTEXT)), key);
  });

  test("a ciphertext corrupted in every attempt is corrupt after maxAttempts", async () => {
    const { keyRef, provider } = setup({ maxAttempts: 3 });
    emulator.corruptNext("ciphertext", Number.POSITIVE_INFINITY);
    await rejectsAs(
      provider.wrapKey(randomBytes(32), CONTEXT),
      "corrupt",
      /integrity check after 3 attempts \(the ciphertext failed its CRC32C check\)/,
    );
    assert.equal(callsFor(keyRef, "Encrypt").length, 3);
  });

  test("a missing verified_plaintext_crc32c or verified AAD flag is detected", async () => {
    const { provider } = setup();
    emulator.corruptNext("verifiedPlaintextCrc32c", Number.POSITIVE_INFINITY);
    await rejectsAs(provider.wrapKey(randomBytes(32), CONTEXT), "corrupt", /plaintext checksum/);
    emulator.clearFaults();
    emulator.corruptNext("verifiedAdditionalAuthenticatedDataCrc32c", Number.POSITIVE_INFINITY);
    await rejectsAs(provider.wrapKey(randomBytes(32), CONTEXT), "corrupt", /AAD checksum/);
  });

  test("a plaintext corrupted in the Decrypt response is detected, retried, corrupt if it persists", async () => {
    const { keyRef, provider } = setup();
    const key = randomBytes(32);
    const wrapped = await provider.wrapKey(key, CONTEXT);
    emulator.corruptNext("plaintext", 1);
    assert.deepEqual(Buffer.from(await provider.unwrapKey(wrapped, CONTEXT)), key);
    assert.equal(callsFor(keyRef, "Decrypt").length, 2);
    emulator.corruptNext("plaintext", Number.POSITIVE_INFINITY);
    await rejectsAs(
      provider.unwrapKey(wrapped, CONTEXT),
      "corrupt",
      /unwrapped key failed its CRC32C check/,
    );
  });

  test("a request damaged on its way in (server-side checksum mismatch) is retried, then corrupt", async () => {
    const { keyRef, provider } = setup();
    emulator.corruptNext("requestPlaintext", 1);
    const wrapped = await provider.wrapKey(randomBytes(32), CONTEXT);
    assert.deepEqual(
      callsFor(keyRef, "Encrypt").map((entry) => entry.code),
      ["INVALID_ARGUMENT", "OK"],
    );
    emulator.corruptNext("requestCiphertext", Number.POSITIVE_INFINITY);
    await rejectsAs(
      provider.unwrapKey(wrapped, CONTEXT),
      "corrupt",
      /damaged before reaching Cloud KMS \(server-side CRC32C mismatch\) after 3 attempts/,
    );
  });

  test("a disabled key version is a user error naming what to do, and recovers when re-enabled", async () => {
    const { version1, provider } = setup();
    const wrapped = await provider.wrapKey(randomBytes(32), CONTEXT);
    emulator.disableVersion(version1);
    const expected =
      /not enabled: enable it \(gcloud kms keys versions enable\).*current state is: DISABLED/;
    await rejectsAs(provider.unwrapKey(wrapped, CONTEXT), "user", expected);
    await rejectsAs(provider.wrapKey(randomBytes(32), CONTEXT), "user", expected);
    await rejectsAs(provider.checkHealth(), "user", expected);
    emulator.enableVersion(version1);
    await provider.checkHealth();
    await provider.unwrapKey(wrapped, CONTEXT);
  });

  test("a destroyed key version is a user error", async () => {
    const { version1, provider } = setup();
    const wrapped = await provider.wrapKey(randomBytes(32), CONTEXT);
    emulator.destroyVersion(version1);
    await rejectsAs(provider.unwrapKey(wrapped, CONTEXT), "user", /current state is: DESTROYED/);
  });

  test("permission denied is a user error naming the role to grant, and is not retried", async () => {
    const { keyRef, provider } = setup();
    emulator.denyAccess();
    await rejectsAs(
      provider.wrapKey(randomBytes(32), CONTEXT),
      "user",
      new RegExp(`grant roles/cloudkms\\.cryptoKeyEncrypterDecrypter on ${keyRef}`),
    );
    assert.equal(callsFor(keyRef, "Encrypt").length, 1);
    emulator.allowAccess();
    await provider.wrapKey(randomBytes(32), CONTEXT);
  });

  test("an unknown CryptoKey is a user error", async () => {
    const provider = new GcpKmsProvider({
      keyRef: "projects/test-project/locations/global/keyRings/ring/cryptoKeys/missing",
      client: emulator.clientOptions(),
      timeoutMs: 2_000,
    });
    open.push(provider);
    await rejectsAs(provider.wrapKey(randomBytes(32), CONTEXT), "user", /has no CryptoKey/);
  });

  test("throttling is retried with back-off, and is throttled when it persists", async () => {
    const { keyRef, provider } = setup({ maxAttempts: 3 });
    emulator.throttleNext(1);
    await provider.wrapKey(randomBytes(32), CONTEXT);
    assert.equal(callsFor(keyRef, "Encrypt").length, 2);
    emulator.throttleNext(Number.POSITIVE_INFINITY);
    await rejectsAs(
      provider.wrapKey(randomBytes(32), CONTEXT),
      "throttled",
      /throttling Encrypt .* after 3 attempts: retry later or raise the Cloud KMS cryptographic-requests quota/,
    );
    assert.equal(callsFor(keyRef, "Encrypt").length, 5);
  });

  test("a throttled attempt retried successfully is reported once as a throttled failed attempt", async () => {
    const attempts: ProviderErrorClass[] = [];
    const { keyRef, provider } = setup({
      maxAttempts: 3,
      onAttemptFailed: (errorClass) => attempts.push(errorClass),
    });
    const key = randomBytes(32);
    const wrapped = await provider.wrapKey(key, CONTEXT);
    assert.deepEqual(attempts, [], "a call that succeeds at once reports no failed attempt");
    emulator.throttleNext(1, ["Decrypt"]);
    assert.deepEqual(Buffer.from(await provider.unwrapKey(wrapped, CONTEXT)), key);
    assert.equal(callsFor(keyRef, "Decrypt").length, 2);
    assert.deepEqual(attempts, ["throttled"]);
  });

  test("an outage reports every failed attempt as other", async () => {
    const attempts: ProviderErrorClass[] = [];
    const { provider } = setup({
      maxAttempts: 3,
      onAttemptFailed: (errorClass) => attempts.push(errorClass),
    });
    emulator.failNext(Number.POSITIVE_INFINITY, "UNAVAILABLE");
    await rejectsAs(provider.wrapKey(randomBytes(32), CONTEXT), "other", /after 3 attempts/);
    assert.deepEqual(attempts, ["other", "other", "other"]);
  });

  test("UNAVAILABLE is retried, a lasting outage is other; INTERNAL is other at once", async () => {
    const { keyRef, provider } = setup({ maxAttempts: 3 });
    emulator.failNext(1, "UNAVAILABLE");
    await provider.wrapKey(randomBytes(32), CONTEXT);
    emulator.failNext(Number.POSITIVE_INFINITY, "UNAVAILABLE");
    await rejectsAs(
      provider.wrapKey(randomBytes(32), CONTEXT),
      "other",
      /unavailable .*after 3 attempts/,
    );
    assert.equal(callsFor(keyRef, "Encrypt").length, 5);
    emulator.clearFaults();
    emulator.failNext(1, "INTERNAL");
    await rejectsAs(provider.wrapKey(randomBytes(32), CONTEXT), "other", /failed with INTERNAL/);
    assert.equal(callsFor(keyRef, "Encrypt").length, 6);
  });

  test("an answer slower than timeoutMs is other, within the deadline (gax retries are off)", async () => {
    const { provider } = setup({ timeoutMs: 300 });
    emulator.setDelay(5_000);
    const started = Date.now();
    await rejectsAs(
      provider.wrapKey(randomBytes(32), CONTEXT),
      "other",
      /did not answer Encrypt within 300 ms/,
    );
    assert.ok(Date.now() - started < 1_500, `took ${Date.now() - started} ms`);
  });

  test("an aborted signal ends the call at once as other", async () => {
    const { provider } = setup({ timeoutMs: 5_000 });
    emulator.setDelay(5_000);
    const started = Date.now();
    await rejectsAs(provider.checkHealth(AbortSignal.timeout(100)), "other", /cancelled/);
    assert.ok(Date.now() - started < 1_500, `took ${Date.now() - started} ms`);
  });

  test("after rotation new wraps use the new primary and old wrapped keys still unwrap", async () => {
    const { keyRef, version1, provider } = setup();
    const oldKey = randomBytes(32);
    const oldWrapped = await provider.wrapKey(oldKey, CONTEXT);
    const version2 = emulator.addVersion(keyRef);
    const newKey = randomBytes(32);
    const newWrapped = await provider.wrapKey(newKey, { keyId: "gcp:v2-test" });
    assert.deepEqual(
      callsFor(keyRef, "Encrypt").map((entry) => entry.version),
      [version1, version2],
    );
    assert.deepEqual(Buffer.from(await provider.unwrapKey(oldWrapped, CONTEXT)), oldKey);
    assert.deepEqual(
      Buffer.from(await provider.unwrapKey(newWrapped, { keyId: "gcp:v2-test" })),
      newKey,
    );
    assert.deepEqual(
      callsFor(keyRef, "Decrypt").map((entry) => entry.usedPrimary),
      [false, true],
    );
  });

  test("checkHealth re-unwraps the last wrapped key: one Decrypt, no Encrypt", async () => {
    const { keyRef, provider } = setup();
    await provider.wrapKey(randomBytes(32), CONTEXT);
    await provider.checkHealth();
    await provider.checkHealth();
    assert.equal(callsFor(keyRef, "Encrypt").length, 1);
    assert.equal(callsFor(keyRef, "Decrypt").length, 2);
    assert.equal(callsFor(keyRef, "GetCryptoKey").length, 0);
  });

  test("checkHealth before any wrap round-trips a probe, and fails when decrypt is revoked", async () => {
    const { keyRef, provider } = setup();
    await provider.checkHealth();
    assert.equal(callsFor(keyRef, "Encrypt").length, 1);
    assert.equal(callsFor(keyRef, "Decrypt").length, 1);
    emulator.denyAccess(["Decrypt"]);
    await rejectsAs(provider.checkHealth(), "user", /denied Decrypt/);
  });

  test("no key bytes appear in any error message", async () => {
    const { version1, provider } = setup();
    const key = randomBytes(32);
    const wrapped = await provider.wrapKey(key, CONTEXT);
    const scenarios: Array<() => void> = [
      () => emulator.corruptNext("plaintext", Number.POSITIVE_INFINITY),
      () => emulator.corruptNext("ciphertext", Number.POSITIVE_INFINITY),
      () => emulator.denyAccess(),
      () => emulator.throttleNext(Number.POSITIVE_INFINITY),
      () => emulator.failNext(Number.POSITIVE_INFINITY, "INTERNAL"),
      () => emulator.disableVersion(version1),
    ];
    const forms = [
      key.toString("hex"),
      key.toString("base64"),
      key.toString("base64url"),
      key.join(","),
    ];
    for (const arrange of scenarios) {
      arrange();
      const errors: ProviderError[] = [];
      for (const call of [
        () => provider.unwrapKey(wrapped, CONTEXT),
        () => provider.wrapKey(key, CONTEXT),
      ]) {
        await call().catch((error: unknown) => {
          assert.ok(error instanceof ProviderError);
          errors.push(error);
        });
      }
      assert.ok(errors.length > 0, "every scenario makes at least one call fail");
      for (const error of errors) {
        const rendered = `${error.message} ${String(error.cause)} ${JSON.stringify(error)}`;
        for (const form of forms)
          assert.ok(!rendered.includes(form), `leaked in: ${error.message}`);
      }
      emulator.clearFaults();
      emulator.enableVersion(version1);
    }
  });

  test("describe() names the provider and key; close() is idempotent and later calls fail", async () => {
    const { keyRef, provider } = setup();
    assert.equal(provider.name, "gcp");
    assert.deepEqual(provider.describe(), { provider: "gcp", keyRef });
    await provider.close();
    await provider.close();
    await rejectsAs(provider.wrapKey(randomBytes(32), CONTEXT), "other", /closed/);
  });

  test("the key reference must be a CryptoKey name", () => {
    const valid = "projects/p/locations/global/keyRings/ring/cryptoKeys/key";
    for (const [keyRef, message] of [
      [`${valid}/cryptoKeyVersions/1`, /name the CryptoKey, not a version/],
      [
        "projects/p/keyRings/ring/cryptoKeys/key",
        /is not a CryptoKey name \(give projects\/PROJECT\/locations/,
      ],
      [`${valid}/`, /\(give projects\/PROJECT\//],
      ["", /\(give projects\/PROJECT\//],
    ] as const) {
      assert.throws(
        () => new GcpKmsProvider({ keyRef, client: emulator.clientOptions() }),
        (error: unknown) =>
          error instanceof KmsEnvelopeError &&
          error.code === "INVALID_CONFIG" &&
          message.test(error.message),
      );
    }
  });

  test("refuses to start while GOOGLE_SDK_NODE_LOGGING would make the client log key bytes", () => {
    const keyRef = "projects/p/locations/global/keyRings/ring/cryptoKeys/key";
    process.env.GOOGLE_SDK_NODE_LOGGING = "kms";
    try {
      assert.throws(
        () => new GcpKmsProvider({ keyRef, client: emulator.clientOptions() }),
        (error: unknown) =>
          error instanceof KmsEnvelopeError &&
          error.code === "INVALID_CONFIG" &&
          /^GOOGLE_SDK_NODE_LOGGING: is set, .*\(unset it to use the gcp provider\)$/.test(
            error.message,
          ),
      );
    } finally {
      delete process.env.GOOGLE_SDK_NODE_LOGGING;
    }
  });

  test("wrapKey refuses a key of the wrong length; an unwrapped key of the wrong length is corrupt", async () => {
    const { keyRef, provider } = setup({ keyBytes: 16 });
    await assert.rejects(
      provider.wrapKey(randomBytes(32), CONTEXT),
      /the gcp provider wraps 16-byte keys, not 32-byte ones/,
    );
    const wrapped = await provider.wrapKey(randomBytes(16), CONTEXT);
    const strict = new GcpKmsProvider({
      keyRef,
      client: emulator.clientOptions(),
      timeoutMs: 2_000,
    });
    open.push(strict);
    await rejectsAs(strict.unwrapKey(wrapped, CONTEXT), "corrupt", /unwrapped to 16 bytes, not 32/);
  });

  test("createProvider uses a loopback http:// endpoint insecurely and keeps TLS otherwise", async () => {
    const { keyRef } = setup();
    const attempts: ProviderErrorClass[] = [];
    const provider = createProvider(keyRef, {
      timeoutMs: 2_000,
      maxAttempts: 2,
      endpoint: `http://127.0.0.1:${emulator.port}`,
      environment: {},
      onAttemptFailed: (errorClass) => attempts.push(errorClass),
    });
    open.push(provider);
    const key = randomBytes(32);
    emulator.throttleNext(1, ["Encrypt"]);
    assert.deepEqual(
      Buffer.from(await provider.unwrapKey(await provider.wrapKey(key, CONTEXT), CONTEXT)),
      key,
    );
    assert.deepEqual(attempts, ["throttled"], "createProvider passes onAttemptFailed through");
    assert.deepEqual(clientOptionsForEndpoint("kms.internal.example:8443"), {
      apiEndpoint: "kms.internal.example",
      port: 8443,
    });
    assert.throws(() => clientOptionsForEndpoint("http://kms.example.com"), /loopback emulator/);
  });
});

describe("GcpKmsProvider credentials", () => {
  test("a token past its expiry is refused UNAUTHENTICATED, 'user', naming the credential", async () => {
    const metadata = await MetadataServer.start();
    const tls = await testTls();
    const secure = await GcpKmsEmulator.start({
      tls,
      authorize: (token) => metadata.verdict(token),
    });
    try {
      metadata.lifetimeSeconds = 1;
      const issued = await fetch(
        `http://${metadata.host}/computeMetadata/v1/instance/service-accounts/default/token`,
        { headers: { "Metadata-Flavor": "Google" } },
      );
      const { access_token: token } = (await issued.json()) as { access_token: string };
      // Call credentials that keep handing out the one token, as a source that stopped renewing.
      const bearer = grpc.credentials.createFromMetadataGenerator((_, callback) => {
        const headers = new grpc.Metadata();
        headers.add("authorization", `Bearer ${token}`);
        callback(null, headers);
      });
      const keyRef = "projects/p/locations/global/keyRings/r/cryptoKeys/tokens";
      secure.createKey(keyRef);
      const provider = new GcpKmsProvider({
        keyRef,
        client: {
          apiEndpoint: "localhost",
          port: secure.port,
          sslCreds: grpc.credentials.combineChannelCredentials(
            grpc.credentials.createSsl(Buffer.from(tls.ca)),
            bearer,
          ),
          universeDomain: "googleapis.com",
        },
        timeoutMs: 3_000,
        retryDelayMs: 5,
      });
      open.push(provider);
      const wrapped = await provider.wrapKey(randomBytes(32), CONTEXT);
      await new Promise((resolve) => setTimeout(resolve, 1_100));
      const error = await rejectsAs(
        provider.unwrapKey(wrapped, CONTEXT),
        "user",
        /^Cloud KMS rejected the credentials of the credentials given to the gcp provider for Decrypt: give it valid ones .*\(Cloud KMS: Request had invalid authentication credentials\./,
      );
      assert.ok(!error.message.includes(token));
      assert.deepEqual(secure.refusedTokens, { total: 1, expired: 1 });
    } finally {
      await secure.close();
      await metadata.close();
    }
  });

  test("the credential named in errors is the file or the metadata server ADC would use", () => {
    assert.match(
      gcpCredentialSource({ GOOGLE_APPLICATION_CREDENTIALS: "/etc/gcp/key.json" }, false).name,
      /^the credentials file \/etc\/gcp\/key\.json \(GOOGLE_APPLICATION_CREDENTIALS\)$/,
    );
    assert.match(
      gcpCredentialSource({}, false).name,
      /^the service account of the metadata server metadata\.google\.internal \(GCE, or GKE workload identity\)$/,
    );
    assert.match(
      gcpCredentialSource({ GCE_METADATA_HOST: "169.254.169.254" }, false).name,
      /metadata server 169\.254\.169\.254 /,
    );
  });
});
