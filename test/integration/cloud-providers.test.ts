import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { status } from "@grpc/grpc-js";
import { AwsKmsEmulator } from "../emulators/aws-kms/server.js";
import { AzureKeyVaultEmulator } from "../emulators/azure-key-vault/server.js";
import { GcpKmsEmulator } from "../emulators/gcp-kms/server.js";
import { VaultTransitEmulator } from "../emulators/vault-transit/server.js";
import {
  call,
  callError,
  DaemonProcess,
  dial,
  runCli,
  temporaryDirectory,
} from "../support/daemon-process.js";

/** What the daemon-level tests need from one cloud's emulator. */
interface CloudUnderTest {
  provider: "aws" | "gcp" | "azure" | "vault";
  keyRef: string;
  /** Environment and flags an operator would give the daemon and the CLI. */
  env: NodeJS.ProcessEnv;
  args: string[];
  /** Key-service calls that unwrap (Decrypt / unwrapkey) seen so far. */
  unwrapCalls(): number;
  /** Calls that wrap (Encrypt / wrapkey) seen so far. */
  wrapCalls(): number;
  revoke(): void;
  restore(): void;
  throttleNextUnwrap(): void;
  corruptNextUnwrap(): void;
  /**
   * The one note keygen and rotate may print on stderr for this cloud's identity (a check
   * skipped for want of an optional permission); nothing else may appear. The daemon, which
   * only unwraps, needs no such permission and never says it.
   */
  note?: RegExp;
  close(): Promise<void>;
}

async function awsUnderTest(): Promise<CloudUnderTest> {
  const emulator = await AwsKmsEmulator.start();
  const { arn } = emulator.createKey("kms-envelope test");
  return {
    provider: "aws",
    keyRef: arn,
    env: {
      AWS_ENDPOINT_URL_KMS: emulator.endpoint,
      AWS_ACCESS_KEY_ID: emulator.credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: emulator.credentials.secretAccessKey,
      AWS_REGION: emulator.region,
      // Nothing from the machine's own AWS setup may leak in.
      AWS_CONFIG_FILE: "/nonexistent",
      AWS_SHARED_CREDENTIALS_FILE: "/nonexistent",
      AWS_EC2_METADATA_DISABLED: "true",
      // Unset as for an operator: the provider itself keeps the SDK's Node-version notice off
      // stderr, which every command's "nothing on stderr" check holds it to.
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: undefined,
    },
    args: [],
    unwrapCalls: () => emulator.calls.Decrypt,
    wrapCalls: () => emulator.calls.Encrypt,
    revoke: () => emulator.disableKey(arn),
    restore: () => emulator.enableKey(arn),
    throttleNextUnwrap: () => emulator.throttleNext(1),
    corruptNextUnwrap: () => emulator.corruptNext(1),
    close: () => emulator.close(),
  };
}

async function gcpUnderTest(): Promise<CloudUnderTest> {
  const emulator = await GcpKmsEmulator.start();
  const keyRef = "projects/kms-envelope/locations/global/keyRings/test/cryptoKeys/master";
  const version = emulator.createKey(keyRef);
  return {
    provider: "gcp",
    keyRef,
    env: { GOOGLE_APPLICATION_CREDENTIALS: "/nonexistent" },
    args: ["--endpoint", `http://127.0.0.1:${emulator.port}`],
    unwrapCalls: () => emulator.calls.Decrypt,
    wrapCalls: () => emulator.calls.Encrypt,
    revoke: () => emulator.disableVersion(version),
    restore: () => emulator.enableVersion(version),
    throttleNextUnwrap: () => emulator.throttleNext(1, ["Decrypt"]),
    corruptNextUnwrap: () => emulator.corruptNext("plaintext"),
    close: () => emulator.close(),
  };
}

async function azureUnderTest(): Promise<CloudUnderTest> {
  // The least-privilege identity of issue 14: wrapKey and unwrapKey, no get.
  const emulator = await AzureKeyVaultEmulator.start({ keyPermissions: ["wrapKey", "unwrapKey"] });
  const key = emulator.createKey("master");
  return {
    provider: "azure",
    // The production form of a versioned key URL: the emulator is reached through HTTPS_PROXY.
    keyRef: emulator.keyUrl(key.name, key.version),
    env: emulator.daemonEnvironment(),
    args: [],
    unwrapCalls: () => emulator.counters.unwrapkey,
    wrapCalls: () => emulator.counters.wrapkey,
    revoke: () => emulator.disable(key),
    restore: () => emulator.enable(key),
    throttleNextUnwrap: () => emulator.throttle(1, { operation: "unwrapkey" }),
    corruptNextUnwrap: () => emulator.corruptNextUnwrap("flip"),
    note: /^azure: Key Vault refused to read https:\/\/kms-envelope-emulator\.vault\.azure\.net\/keys\/master\/\w+ \(403, no keys get permission\): .*Grant get to restore the checks$/,
    close: () => emulator.close(),
  };
}

async function vaultUnderTest(): Promise<CloudUnderTest> {
  const emulator = await VaultTransitEmulator.start();
  const secrets = await mkdtemp(join(tmpdir(), "vault-approle-"));
  emulator.createKey("master");
  const policy = {
    "transit/encrypt/master": ["update"],
    "transit/decrypt/master": ["update"],
  } as const;
  emulator.writePolicy("kms-envelope", policy);
  const { roleId, secretId } = emulator
    .enableAppRole()
    .createRole("kms-envelope", { policies: ["kms-envelope"], tokenTtlSeconds: 600 });
  const secretIdFile = join(secrets, "secret-id");
  await writeFile(secretIdFile, `${secretId}\n`, { mode: 0o600 });
  return {
    provider: "vault",
    keyRef: emulator.keyRef("master"),
    // AppRole as an operator would configure it; a VAULT_TOKEN of the machine must not leak in.
    env: {
      VAULT_CACERT: emulator.caFile,
      VAULT_AUTH_METHOD: "approle",
      VAULT_ROLE_ID: roleId,
      VAULT_SECRET_ID_FILE: secretIdFile,
      VAULT_TOKEN: undefined,
      VAULT_TLS_SERVER_NAME: undefined,
      VAULT_ROLE_ID_FILE: undefined,
      VAULT_SECRET_ID: undefined,
      VAULT_AUTH_MOUNT: undefined,
      VAULT_AUTH_NAMESPACE: undefined,
    },
    args: [],
    unwrapCalls: () => emulator.counters.decrypt,
    wrapCalls: () => emulator.counters.encrypt,
    revoke: () => emulator.writePolicy("kms-envelope", {}),
    restore: () => emulator.writePolicy("kms-envelope", policy),
    throttleNextUnwrap: () => emulator.throttle(1, ["decrypt"], 0),
    corruptNextUnwrap: () => emulator.corruptNextDecrypt(),
    close: async () => {
      await emulator.close();
      await rm(secrets, { recursive: true, force: true });
    },
  };
}

async function eventually(check: () => Promise<void>, timeoutMs = 8000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

/** Asserts stderr holds nothing but the cloud's note, once, as the key commands print it. */
function onlyTheNote(stderr: string, note: RegExp | undefined): void {
  const lines = stderr.split("\n").filter((line) => line !== "");
  if (note === undefined) {
    assert.deepEqual(lines, [], "nothing on stderr");
    return;
  }
  assert.equal(lines.length, 1, stderr);
  assert.match((lines[0] ?? "").replace(/^kms-envelope: /, ""), note);
}

const keyIdsOf = (text: string) =>
  [...text.matchAll(/keyId: (\S+)/g)].map((match) => match[1] as string);

for (const [label, makeCloud] of [
  ["aws", awsUnderTest],
  ["gcp", gcpUnderTest],
  ["azure", azureUnderTest],
  ["vault", vaultUnderTest],
] as const) {
  describe(`${label} provider through the daemon`, () => {
    let cloud: CloudUnderTest;
    let directory: Awaited<ReturnType<typeof temporaryDirectory>>;
    let keyring: string;
    const serveArgs = (...extra: string[]) => [
      "--keyring",
      keyring,
      ...cloud.args,
      "--provider-attempts",
      "3",
      "--provider-timeout",
      "5s",
      ...extra,
    ];

    before(async () => {
      cloud = await makeCloud();
      directory = await temporaryDirectory();
      keyring = join(directory.path, "keyring.yaml");
    });
    after(async () => {
      await cloud.close();
      await directory.remove();
    });

    test("keygen wraps a master key through the cloud into a new keyring", async () => {
      const result = await runCli(
        [
          "keygen",
          "--provider",
          cloud.provider,
          "--key-ref",
          cloud.keyRef,
          "--keyring",
          keyring,
          ...cloud.args,
        ],
        cloud.env,
      );
      assert.equal(result.code, 0, result.stderr);
      onlyTheNote(result.stderr, cloud.note);
      const text = await readFile(keyring, "utf8");
      assert.match(text, new RegExp(`provider: ${cloud.provider}`));
      assert.match(keyIdsOf(text)[0] ?? "", new RegExp(`^${cloud.provider}:`));
      assert.equal(cloud.wrapCalls(), 1);
    });

    test("serving makes no cloud call per request: one unwrap at start, one per health check", async () => {
      const startUnwraps = cloud.unwrapCalls();
      const daemon = await DaemonProcess.start({
        socketPath: join(directory.path, "count.sock"),
        env: cloud.env,
        args: serveArgs("--health-interval", "1h"),
      });
      const clients = dial(daemon.socketPath);
      assert.equal(daemon.keyId, keyIdsOf(await readFile(keyring, "utf8"))[0]);
      for (let index = 0; index < 200; index += 1) {
        const seed = randomBytes(32);
        const sealed = await call<{ ciphertext: Buffer; key_id: string }>(
          clients.kmsV2,
          "Encrypt",
          { plaintext: seed, uid: "n" },
        );
        const opened = await call<{ plaintext: Buffer }>(clients.kmsV2, "Decrypt", {
          ciphertext: sealed.ciphertext,
          key_id: sealed.key_id,
          uid: "n",
        });
        assert.deepEqual(opened.plaintext, seed);
      }
      clients.close();
      assert.equal(await daemon.stop(), 0);
      // Only the daemon's JSON log, nothing an SDK printed, and no skipped check to report.
      const records = daemon.logRecords();
      assert.deepEqual(
        records.filter((record) => "raw" in record),
        [],
        "every line the daemon wrote is a log record",
      );
      assert.deepEqual(
        records.filter((record) => /refused to read|not granted/.test(String(record.msg))),
        [],
      );
      assert.equal(
        cloud.unwrapCalls() - startUnwraps,
        2,
        "load + first health check, nothing per request",
      );
      assert.equal(cloud.wrapCalls(), 1, "no wrap since keygen");
    });

    describe("with a daemon checking health every 300 ms and a 1.5 s grace period", () => {
      let daemon: DaemonProcess;
      let clients: ReturnType<typeof dial>;
      let sealed: { ciphertext: Buffer; key_id: string };
      const seed = randomBytes(32);

      before(async () => {
        daemon = await DaemonProcess.start({
          socketPath: join(directory.path, "faults.sock"),
          env: cloud.env,
          args: serveArgs(
            "--health-interval",
            "300ms",
            "--grace-period",
            "1500ms",
            "--keyring-poll-interval",
            "200ms",
          ),
        });
        clients = dial(daemon.socketPath);
        sealed = await call(clients.kmsV2, "Encrypt", { plaintext: seed, uid: "s" });
      });
      after(async () => {
        clients.close();
        await daemon.stop();
      });

      const statusOf = () => call<{ healthz: string; key_id: string }>(clients.kmsV2, "Status", {});

      test("rotate with the daemon running: the key id changes and old data still decrypts", async () => {
        const rotated = await runCli(["rotate", "--keyring", keyring, ...cloud.args], cloud.env);
        assert.equal(rotated.code, 0, rotated.stderr);
        onlyTheNote(rotated.stderr, cloud.note);
        const newKeyId = keyIdsOf(await readFile(keyring, "utf8")).at(-1) as string;
        assert.notEqual(newKeyId, sealed.key_id);
        await eventually(async () => assert.equal((await statusOf()).key_id, newKeyId));
        const opened = await call<{ plaintext: Buffer }>(clients.kmsV2, "Decrypt", {
          ciphertext: sealed.ciphertext,
          key_id: sealed.key_id,
          uid: "o",
        });
        assert.deepEqual(opened.plaintext, seed);
      });

      test("throttling is retried and the daemon stays healthy", async () => {
        const before = cloud.unwrapCalls();
        cloud.throttleNextUnwrap();
        await eventually(async () =>
          assert.ok(cloud.unwrapCalls() >= before + 2, "the throttled call was retried"),
        );
        assert.equal((await statusOf()).healthz, "ok");
        const metrics = await (await fetch(`http://${daemon.httpAddress}/metrics`)).text();
        assert.match(
          metrics,
          new RegExp(
            `kms_envelope_provider_calls_total\\{provider="${cloud.provider}",operation="unwrapKey",result="ok"\\} [1-9]`,
          ),
        );
        // The call itself succeeded on retry; the throttled attempt inside it is still counted.
        assert.match(
          metrics,
          new RegExp(
            `kms_envelope_provider_failed_attempts_total\\{provider="${cloud.provider}",result="throttled"\\} [1-9]`,
          ),
        );
      });

      test("a corrupted unwrap answer is detected and never becomes a key", async () => {
        cloud.corruptNextUnwrap();
        const before = cloud.unwrapCalls();
        await eventually(async () =>
          assert.ok(
            cloud.unwrapCalls() >= before + 2,
            `unwrap calls ${cloud.unwrapCalls()}, expected ${before + 2} or more`,
          ),
        );
        await eventually(async () => assert.equal((await statusOf()).healthz, "ok"));
        const opened = await call<{ plaintext: Buffer }>(clients.kmsV2, "Decrypt", {
          ciphertext: sealed.ciphertext,
          key_id: sealed.key_id,
          uid: "c",
        });
        assert.deepEqual(opened.plaintext, seed);
      });

      test("revocation: not ok within a check, refused after the grace period, recovered after re-enabling", async () => {
        cloud.revoke();
        try {
          await eventually(
            async () =>
              assert.match((await statusOf()).healthz, /custody provider failing \(user\)/),
            3000,
          );
          await eventually(async () => {
            const refused = await callError(clients.kmsV2, "Encrypt", {
              plaintext: seed,
              uid: "r",
            });
            assert.equal(refused.code, status.UNAVAILABLE);
          }, 5000);
        } finally {
          cloud.restore();
        }
        await eventually(async () => {
          assert.equal((await statusOf()).healthz, "ok");
          await call(clients.kmsV2, "Encrypt", { plaintext: seed, uid: "back" });
        }, 5000);
      });
    });

    test("a cloud that refuses at start-up stops the daemon with a one-line error and exit 1", async () => {
      cloud.revoke();
      try {
        const result = await runCli(
          [
            "serve",
            ...serveArgs("--socket", join(directory.path, "down.sock"), "--http-address", "off"),
          ],
          cloud.env,
        );
        assert.equal(result.code, 1);
        assert.match(result.stderr, /^kms-envelope: .+\n$/);
      } finally {
        cloud.restore();
      }
    });
  });
}
