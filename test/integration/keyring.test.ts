import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { status } from "@grpc/grpc-js";
import { PACKAGE_ROOT } from "../../src/package-info.js";
import {
  call,
  callError,
  DaemonProcess,
  dial,
  newMasterKey,
  runCli,
  temporaryDirectory,
} from "../support/daemon-process.js";

const CUSTOM_MODULE = join(PACKAGE_ROOT, "test/fixtures/custom-provider.ts");

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

const keyIdsOf = (text: string) =>
  [...text.matchAll(/keyId: (\S+)/g)].map((match) => match[1] as string);

describe("keyring: keygen, serve, rotate and retire without a restart (local provider)", () => {
  let directory: Awaited<ReturnType<typeof temporaryDirectory>>;
  let keyring: string;
  let daemon: DaemonProcess;
  let clients: ReturnType<typeof dial>;
  const env = { ENCRYPTION_MASTER_KEY: newMasterKey() };
  const keyringArgs = (...extra: string[]) => ["--keyring", keyring, ...extra];

  before(async () => {
    directory = await temporaryDirectory();
    keyring = join(directory.path, "keyring.yaml");
    const created = await runCli(
      ["keygen", "--provider", "local", "--key-ref", "env:ENCRYPTION_MASTER_KEY", ...keyringArgs()],
      env,
    );
    assert.equal(created.code, 0, created.stderr);
    daemon = await DaemonProcess.start({
      socketPath: join(directory.path, "kms.sock"),
      env,
      args: keyringArgs("--keyring-poll-interval", "200ms"),
    });
    clients = dial(daemon.socketPath);
  });

  after(async () => {
    clients.close();
    await daemon.stop();
    await directory.remove();
  });

  test("keygen writes a primary version that holds no plaintext key, and serve uses it", async () => {
    const text = await readFile(keyring, "utf8");
    const [keyId] = keyIdsOf(text);
    assert.match(text, /state: primary/);
    assert.ok(!text.includes(env.ENCRYPTION_MASTER_KEY));
    assert.equal(daemon.keyId, keyId);
    assert.notEqual(keyId, undefined);
  });

  test("rotate while serving: Status moves to the new key id, old ciphertexts still decrypt", async () => {
    const seed = randomBytes(32);
    const before = await call<{ ciphertext: Buffer; key_id: string }>(clients.kmsV2, "Encrypt", {
      plaintext: seed,
      uid: "r1",
    });
    const rotated = await runCli(["rotate", ...keyringArgs()], env);
    assert.equal(rotated.code, 0, rotated.stderr);
    const newKeyId = keyIdsOf(await readFile(keyring, "utf8")).at(-1) as string;
    assert.notEqual(newKeyId, before.key_id);
    await eventually(async () => {
      assert.equal((await call<{ key_id: string }>(clients.kmsV2, "Status", {})).key_id, newKeyId);
    });
    const after = await call<{ key_id: string }>(clients.kmsV2, "Encrypt", {
      plaintext: seed,
      uid: "r2",
    });
    assert.equal(after.key_id, newKeyId);
    const opened = await call<{ plaintext: Buffer }>(clients.kmsV2, "Decrypt", {
      ciphertext: before.ciphertext,
      key_id: before.key_id,
      uid: "r3",
    });
    assert.deepEqual(opened.plaintext, seed);
  });

  test("a broken keyring edit is refused and the daemon keeps its keys", async () => {
    const good = await readFile(keyring, "utf8");
    const keyId = (await call<{ key_id: string }>(clients.kmsV2, "Status", {})).key_id;
    await writeFile(keyring, "versions: [this is not a keyring");
    await eventually(async () => {
      assert.ok(
        daemon.lines.some((line) =>
          line.includes("keyring reload failed; keeping the current keys"),
        ),
        "the refused reload is logged",
      );
    });
    assert.equal(
      (await call<{ key_id: string; healthz: string }>(clients.kmsV2, "Status", {})).key_id,
      keyId,
    );
    await writeFile(keyring, good);
  });

  test("keygen on an existing keyring stages an active version; rotate --promote makes it primary", async () => {
    const staged = await runCli(
      ["keygen", "--provider", "local", "--key-ref", "env:ENCRYPTION_MASTER_KEY", ...keyringArgs()],
      env,
    );
    assert.equal(staged.code, 0, staged.stderr);
    assert.match(staged.stderr, /added (local:\S+) as active/);
    const stagedKeyId = /added (local:\S+) as active/.exec(staged.stderr)?.[1] as string;
    const promoted = await runCli(["rotate", "--promote", stagedKeyId, ...keyringArgs()], env);
    assert.equal(promoted.code, 0, promoted.stderr);
    assert.match(promoted.stdout, new RegExp(`primary ${stagedKeyId}`));
    await eventually(async () => {
      assert.equal(
        (await call<{ key_id: string }>(clients.kmsV2, "Status", {})).key_id,
        stagedKeyId,
      );
    });
  });

  test("retire: values under a retired version are refused with NOT_FOUND naming the retirement", async () => {
    const [firstKeyId] = keyIdsOf(await readFile(keyring, "utf8")) as [string];
    const seed = randomBytes(32);
    // A ciphertext naming the first version: its key id is looked up before anything is opened.
    const sealed = await call<{ ciphertext: Buffer; key_id: string }>(clients.kmsV2, "Encrypt", {
      plaintext: seed,
      uid: "x",
    });
    const refused = await runCli(
      [
        "retire",
        "--key-id",
        (await call<{ key_id: string }>(clients.kmsV2, "Status", {})).key_id,
        ...keyringArgs(),
      ],
      env,
    );
    assert.equal(refused.code, 2);
    assert.match(
      refused.stderr,
      /is the primary version \(rotate to a new primary before retiring it\)/,
    );
    const retired = await runCli(["retire", "--key-id", firstKeyId, ...keyringArgs()], env);
    assert.equal(retired.code, 0, retired.stderr);
    await eventually(async () => {
      const error = await callError(clients.kmsV2, "Decrypt", {
        ciphertext: Buffer.concat([
          Buffer.from([1, 0, firstKeyId.length]),
          Buffer.from(firstKeyId),
          sealed.ciphertext.subarray(3 + sealed.key_id.length),
        ]),
        key_id: firstKeyId,
      });
      assert.equal(error.code, status.NOT_FOUND);
      assert.match(error.details, /is retired in the keyring/);
    });
    const promoteRetired = await runCli(["rotate", "--promote", firstKeyId, ...keyringArgs()], env);
    assert.equal(promoteRetired.code, 2);
    assert.match(
      promoteRetired.stderr,
      /is retired, and a retired version is never promoted \(generate a new one with rotate\)/,
    );
  });
});

describe("keyring with a custom provider module: revocation, grace period, recovery, call counts", () => {
  let directory: Awaited<ReturnType<typeof temporaryDirectory>>;
  let env: NodeJS.ProcessEnv;
  let keyring: string;

  before(async () => {
    directory = await temporaryDirectory();
    keyring = join(directory.path, "keyring.yaml");
    env = {
      CUSTOM_PROVIDER_KEK: randomBytes(32).toString("base64"),
      CUSTOM_PROVIDER_REVOKED: join(directory.path, "revoked"),
      CUSTOM_PROVIDER_CALLS: join(directory.path, "calls.log"),
    };
    const created = await runCli(
      ["keygen", "--provider", CUSTOM_MODULE, "--key-ref", "custom://key-1", "--keyring", keyring],
      env,
    );
    assert.equal(created.code, 0, created.stderr);
    assert.match(created.stdout, /primary custom:\S+ {2}custom custom:\/\/key-1/);
  });

  after(() => directory.remove());

  const serveArgs = (...extra: string[]) => [
    "--keyring",
    keyring,
    "--provider-module",
    CUSTOM_MODULE,
    ...extra,
  ];

  test("a keyring naming a provider that is not loaded is a one-line error, exit 2", async () => {
    const result = await runCli(
      [
        "serve",
        "--keyring",
        keyring,
        "--socket",
        join(directory.path, "x.sock"),
        "--http-address",
        "off",
      ],
      env,
    );
    assert.equal(result.code, 2);
    assert.match(
      result.stderr,
      /provider "custom": is not built in, and no --provider-module registered it \(pass --provider-module with its module\)/,
    );
  });

  test("provider calls happen at start and per health check, never per request", async () => {
    await rm(env.CUSTOM_PROVIDER_CALLS as string, { force: true });
    const daemon = await DaemonProcess.start({
      socketPath: join(directory.path, "count.sock"),
      env,
      args: serveArgs("--health-interval", "1h"),
    });
    const clients = dial(daemon.socketPath);
    for (let index = 0; index < 300; index += 1) {
      const sealed = await call<{ ciphertext: Buffer; key_id: string }>(clients.kmsV2, "Encrypt", {
        plaintext: randomBytes(32),
        uid: "n",
      });
      await call(clients.kmsV2, "Decrypt", {
        ciphertext: sealed.ciphertext,
        key_id: sealed.key_id,
        uid: "n",
      });
    }
    const metrics = await (await fetch(`http://${daemon.httpAddress}/metrics`)).text();
    assert.match(
      metrics,
      /kms_envelope_provider_calls_total\{provider="custom",operation="unwrapKey",result="ok"\} 2\n/,
    );
    clients.close();
    assert.equal(await daemon.stop(), 0);
    const calls = (await readFile(env.CUSTOM_PROVIDER_CALLS as string, "utf8")).trim().split("\n");
    // One unwrap to load the key, one re-unwrap for the first health check: 600 requests add none.
    assert.deepEqual(calls, ["unwrapKey", "unwrapKey"]);
  });

  test("revocation: healthz fails within a check interval, crypto stops after the grace period, and both recover", async () => {
    const daemon = await DaemonProcess.start({
      socketPath: join(directory.path, "revoke.sock"),
      env,
      args: serveArgs("--health-interval", "300ms", "--grace-period", "1500ms"),
    });
    const clients = dial(daemon.socketPath);
    const seed = randomBytes(32);
    const sealed = await call<{ ciphertext: Buffer; key_id: string }>(clients.kmsV2, "Encrypt", {
      plaintext: seed,
      uid: "a",
    });
    await writeFile(env.CUSTOM_PROVIDER_REVOKED as string, "");
    await eventually(async () => {
      const answer = await call<{ healthz: string }>(clients.kmsV2, "Status", {});
      assert.match(
        answer.healthz,
        /custody provider failing \(user\): custom: access to custom:\/\/key-1 is revoked/,
      );
    }, 3000);
    // Within the grace period the daemon still encrypts (a blip must not stop the cluster).
    await call(clients.kmsV2, "Encrypt", { plaintext: seed, uid: "b" });
    await eventually(async () => {
      const refused = await callError(clients.kmsV2, "Encrypt", { plaintext: seed, uid: "c" });
      assert.equal(refused.code, status.UNAVAILABLE);
      assert.match(refused.details, /failed for longer than the grace period/);
    }, 5000);
    const refusedDecrypt = await callError(clients.kmsV2, "Decrypt", {
      ciphertext: sealed.ciphertext,
      key_id: sealed.key_id,
      uid: "d",
    });
    assert.equal(refusedDecrypt.code, status.UNAVAILABLE);
    const livez = await fetch(`http://${daemon.httpAddress}/livez`);
    assert.equal(livez.status, 200, "a revoked key must not make the kubelet restart the daemon");
    await rm(env.CUSTOM_PROVIDER_REVOKED as string);
    await eventually(async () => {
      assert.equal((await call<{ healthz: string }>(clients.kmsV2, "Status", {})).healthz, "ok");
      const opened = await call<{ plaintext: Buffer }>(clients.kmsV2, "Decrypt", {
        ciphertext: sealed.ciphertext,
        key_id: sealed.key_id,
        uid: "e",
      });
      assert.deepEqual(opened.plaintext, seed);
    }, 3000);
    clients.close();
    assert.equal(await daemon.stop(), 0);
  });

  test("a provider that refuses at start-up is a one-line error and a non-zero exit", async () => {
    await writeFile(env.CUSTOM_PROVIDER_REVOKED as string, "");
    try {
      const result = await runCli(
        [
          "serve",
          ...serveArgs("--socket", join(directory.path, "down.sock"), "--http-address", "off"),
        ],
        env,
      );
      assert.equal(result.code, 1);
      assert.match(
        result.stderr,
        /^kms-envelope: custom: access to custom:\/\/key-1 is revoked\n$/,
      );
    } finally {
      await rm(env.CUSTOM_PROVIDER_REVOKED as string, { force: true });
    }
  });
});
