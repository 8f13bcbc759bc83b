import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, afterEach, before, describe, test } from "node:test";
import { DecryptCommand, KMSClient } from "@aws-sdk/client-kms";
import {
  AwsKmsProvider,
  type AwsKmsProviderOptions,
  CONTEXT_KEY_ID,
  CONTEXT_PURPOSE,
  createProvider,
} from "../../../providers/aws.js";
import { awsCredentialSource } from "../../../providers/aws-credentials.js";
import { classifyAwsError } from "../../../providers/aws-errors.js";
import { ProviderError, type ProviderErrorClass } from "../../../providers/types.js";
import { generateVersion } from "../../../src/keys/keyring-edits.js";
import { PACKAGE_ROOT } from "../../../src/package-info.js";
import { AwsKmsEmulator, type Operation } from "../../emulators/aws-kms/server.js";

// A region other than the SDK's usual default, so "region parsed from the ARN" is really tested.
const REGION = "eu-west-3";
const CONTEXT = { keyId: "aws:bWFzdGVyLWtleS1p" };

let kms: AwsKmsEmulator;
const open: AwsKmsProvider[] = [];

before(async () => {
  kms = await AwsKmsEmulator.start({ region: REGION });
});
after(async () => {
  await kms.close();
});
afterEach(async () => {
  kms.clearFaults();
  kms.resetCounters();
  await Promise.all(open.splice(0).map((provider) => provider.close()));
});

/** A provider against the emulator; fault tests pass small maxAttempts so they stay fast. */
function provider(keyRef: string, options: Partial<AwsKmsProviderOptions> = {}): AwsKmsProvider {
  const created = new AwsKmsProvider({
    keyRef,
    endpoint: kms.endpoint,
    credentials: kms.credentials,
    timeoutMs: 3000,
    maxAttempts: 1,
    ...options,
  });
  open.push(created);
  return created;
}

/** Awaits a call that must fail with a ProviderError; returns it. */
async function failure(promise: Promise<unknown>): Promise<ProviderError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof ProviderError, `expected a ProviderError, got ${String(error)}`);
    return error;
  }
  assert.fail("expected the call to fail");
}

async function outcome(promise: Promise<unknown>): Promise<"ok" | ProviderErrorClass> {
  try {
    await promise;
    return "ok";
  } catch (error) {
    assert.ok(error instanceof ProviderError, `expected a ProviderError, got ${String(error)}`);
    return error.errorClass;
  }
}

/** Every text form a secret could leak through, for the no-secret assertions. */
function exposedText(error: ProviderError): string {
  const cause = error.cause as { message?: unknown } | undefined;
  return [error.message, error.stack ?? "", String(cause?.message ?? "")].join("\n");
}

function assertNoSecret(error: ProviderError, ...secrets: Uint8Array[]): void {
  const text = exposedText(error);
  for (const secret of secrets) {
    const bytes = Buffer.from(secret);
    for (const encoded of [
      bytes.toString("hex"),
      bytes.toString("base64"),
      bytes.toString("base64url"),
    ]) {
      assert.ok(!text.includes(encoded), "an error message contains key bytes");
    }
    // A fragment is enough to leak: no 8-byte window may appear either.
    for (let start = 0; start + 8 <= bytes.length; start += 4) {
      const window = bytes.subarray(start, start + 8);
      assert.ok(
        !text.includes(window.toString("hex")),
        "an error message contains key bytes (hex)",
      );
    }
  }
}

describe("AwsKmsProvider against the KMS emulator (real @aws-sdk/client-kms)", () => {
  test("wrapKey/unwrapKey round-trip 16-, 32- and 64-byte keys", async () => {
    const { arn } = kms.createKey();
    for (const length of [16, 32, 64]) {
      const aws = provider(arn, { keyLength: length });
      const key = randomBytes(length);
      const wrapped = await aws.wrapKey(key, CONTEXT);
      assert.ok(!Buffer.from(wrapped).includes(key), "the wrapped key must not contain the key");
      assert.deepEqual(Buffer.from(await aws.unwrapKey(wrapped, CONTEXT)), key);
    }
  });

  test("one SDK call per wrapKey, unwrapKey and checkHealth when nothing fails", async () => {
    const { arn } = kms.createKey();
    const aws = provider(arn, { maxAttempts: 3 });
    const wrapped = await aws.wrapKey(randomBytes(32), CONTEXT);
    assert.deepEqual(kms.calls, { Encrypt: 1, Decrypt: 0, DescribeKey: 0, GenerateDataKey: 0 });
    await aws.unwrapKey(wrapped, CONTEXT);
    assert.deepEqual(kms.calls, { Encrypt: 1, Decrypt: 1, DescribeKey: 0, GenerateDataKey: 0 });
    await aws.checkHealth();
    assert.deepEqual(kms.calls, { Encrypt: 1, Decrypt: 1, DescribeKey: 1, GenerateDataKey: 0 });
  });

  test("a wrapped key is bound to its key id: unwrapping under another key id is corrupt", async () => {
    const { arn } = kms.createKey();
    const aws = provider(arn);
    const key = randomBytes(32);
    const wrapped = await aws.wrapKey(key, CONTEXT);
    const error = await failure(aws.unwrapKey(wrapped, { keyId: "aws:another-key-id" }));
    assert.equal(error.errorClass, "corrupt");
    assert.equal(error.code, "PROVIDER_UNAVAILABLE");
    assert.match(error.message, /rejected the wrapped key .* restore the keyring entry/);
    assertNoSecret(error, key);
  });

  test("wrapKey sends the documented encryption context (a plain SDK Decrypt needs exactly it)", async () => {
    const { arn } = kms.createKey();
    const key = randomBytes(32);
    const wrapped = await provider(arn).wrapKey(key, CONTEXT);
    const client = new KMSClient({
      region: REGION,
      endpoint: kms.endpoint,
      credentials: kms.credentials,
      maxAttempts: 1,
    });
    try {
      const context = { [CONTEXT_PURPOSE]: "master-key", [CONTEXT_KEY_ID]: CONTEXT.keyId };
      assert.deepEqual(["kms-envelope:purpose", "kms-envelope:key-id"], Object.keys(context));
      const output = await client.send(
        new DecryptCommand({ CiphertextBlob: wrapped, EncryptionContext: context }),
      );
      assert.deepEqual(Buffer.from(output.Plaintext ?? []), key);
      await assert.rejects(client.send(new DecryptCommand({ CiphertextBlob: wrapped })), {
        name: "InvalidCiphertextException",
      });
    } finally {
      client.destroy();
    }
  });

  test("keys are addressed by key ARN, key id, alias name and alias ARN (region from the ARN)", async () => {
    const { arn, keyId } = kms.createKey();
    const aliasArn = kms.createAlias("alias/kms-envelope-refs", arn);
    const references: [string, Partial<AwsKmsProviderOptions>][] = [
      [arn, {}],
      [keyId, { region: REGION }],
      ["alias/kms-envelope-refs", { region: REGION }],
      [aliasArn, {}],
    ];
    const key = randomBytes(32);
    const wrappedByArn = await provider(arn).wrapKey(key, CONTEXT);
    for (const [keyRef, options] of references) {
      const aws = provider(keyRef, options);
      assert.deepEqual(aws.describe(), { provider: "aws", keyRef });
      assert.deepEqual(
        Buffer.from(await aws.unwrapKey(await aws.wrapKey(key, CONTEXT), CONTEXT)),
        key,
      );
      // Every reference names the same key, so each unwraps what the ARN wrapped.
      assert.deepEqual(Buffer.from(await aws.unwrapKey(wrappedByArn, CONTEXT)), key);
      await aws.checkHealth();
    }
  });

  test("a wrapped key from another KMS key is refused (Decrypt names KeyId): user", async () => {
    const first = kms.createKey();
    const second = kms.createKey();
    const wrapped = await provider(first.arn).wrapKey(randomBytes(32), CONTEXT);
    const error = await failure(provider(second.arn).unwrapKey(wrapped, CONTEXT));
    assert.equal(error.errorClass, "user");
    assert.match(
      error.message,
      /made with another KMS key .* provider key recorded in the keyring/,
    );
  });

  test("a disabled key fails wrap, unwrap and health as user; enabling it recovers", async () => {
    const { arn } = kms.createKey();
    const aws = provider(arn, { maxAttempts: 3 });
    const key = randomBytes(32);
    const wrapped = await aws.wrapKey(key, CONTEXT);
    kms.disableKey(arn);
    for (const call of [
      aws.wrapKey(key, CONTEXT),
      aws.unwrapKey(wrapped, CONTEXT),
      aws.checkHealth(),
    ]) {
      const error = await failure(call);
      assert.equal(error.errorClass, "user");
      assert.match(
        error.message,
        new RegExp(`${arn} is disabled.*aws kms enable-key --key-id ${arn}`),
      );
      assertNoSecret(error, key);
    }
    // User errors are not retried: one request each, even with three attempts allowed.
    assert.deepEqual(kms.calls, { Encrypt: 2, Decrypt: 1, DescribeKey: 1, GenerateDataKey: 0 });
    kms.enableKey(arn);
    assert.deepEqual(Buffer.from(await aws.unwrapKey(wrapped, CONTEXT)), key);
    await aws.wrapKey(key, CONTEXT);
    await aws.checkHealth();
  });

  test("a key scheduled for deletion fails as user and says how to cancel", async () => {
    const { arn } = kms.createKey();
    const aws = provider(arn);
    const wrapped = await aws.wrapKey(randomBytes(32), CONTEXT);
    kms.scheduleDeletion(arn);
    const health = await failure(aws.checkHealth());
    assert.equal(health.errorClass, "user");
    assert.match(health.message, /scheduled for deletion: cancel it \(aws kms cancel-key-deletion/);
    for (const call of [aws.wrapKey(randomBytes(32), CONTEXT), aws.unwrapKey(wrapped, CONTEXT)]) {
      const error = await failure(call);
      assert.equal(error.errorClass, "user");
      assert.match(error.message, /not usable in its current state.*cancel-key-deletion/);
    }
    kms.enableKey(arn);
    await aws.checkHealth();
  });

  test("a deleted key fails as user (NotFoundException)", async () => {
    const { arn } = kms.createKey();
    const aws = provider(arn);
    const wrapped = await aws.wrapKey(randomBytes(32), CONTEXT);
    kms.deleteKey(arn);
    for (const call of [aws.unwrapKey(wrapped, CONTEXT), aws.checkHealth()]) {
      const error = await failure(call);
      assert.equal(error.errorClass, "user");
      assert.match(error.message, /was not found.*check the key reference and region/);
    }
  });

  test("denied access fails as user and names the permission to grant; recovers when granted", async () => {
    const { arn } = kms.createKey();
    const aws = provider(arn);
    const key = randomBytes(32);
    const wrapped = await aws.wrapKey(key, CONTEXT);
    kms.denyAccess(true);
    const decrypt = await failure(aws.unwrapKey(wrapped, CONTEXT));
    assert.equal(decrypt.errorClass, "user");
    assert.match(decrypt.message, new RegExp(`grant kms:Decrypt on ${arn}`));
    assertNoSecret(decrypt, key);
    const encrypt = await failure(aws.wrapKey(key, CONTEXT));
    assert.match(encrypt.message, new RegExp(`grant kms:Encrypt on ${arn}`));
    assert.equal((await failure(aws.checkHealth())).errorClass, "user");
    kms.denyAccess(false);
    assert.deepEqual(Buffer.from(await aws.unwrapKey(wrapped, CONTEXT)), key);
  });

  test("throttling is retried by the SDK and succeeds when it stops before the last attempt", async () => {
    const { arn } = kms.createKey();
    const aws = provider(arn, { maxAttempts: 2 });
    kms.throttleNext(1);
    const wrapped = await aws.wrapKey(randomBytes(32), CONTEXT);
    assert.ok(wrapped.length > 0);
    assert.equal(kms.calls.Encrypt, 2);
  });

  test("a throttled attempt retried successfully is reported once as a throttled failed attempt", async () => {
    const { arn } = kms.createKey();
    const attempts: ProviderErrorClass[] = [];
    const aws = provider(arn, {
      maxAttempts: 3,
      onAttemptFailed: (errorClass) => attempts.push(errorClass),
    });
    await aws.wrapKey(randomBytes(32), CONTEXT);
    assert.deepEqual(attempts, [], "a call that succeeds at once reports no failed attempt");
    kms.throttleNext(1);
    const wrapped = await aws.wrapKey(randomBytes(32), CONTEXT);
    assert.ok(wrapped.length > 0, "the retried wrap succeeds");
    assert.equal(kms.calls.Encrypt, 3);
    assert.deepEqual(attempts, ["throttled"]);
  });

  test("an outage reports every failed attempt as other; a user error once, unretried", async () => {
    const { arn } = kms.createKey();
    const attempts: ProviderErrorClass[] = [];
    const aws = provider(arn, {
      maxAttempts: 3,
      onAttemptFailed: (errorClass) => attempts.push(errorClass),
    });
    kms.failNext(3, 503);
    assert.equal((await failure(aws.checkHealth())).errorClass, "other");
    assert.deepEqual(attempts, ["other", "other", "other"]);
    attempts.length = 0;
    kms.disableKey(arn);
    assert.equal((await failure(aws.wrapKey(randomBytes(32), CONTEXT))).errorClass, "user");
    assert.deepEqual(attempts, ["user"]);
    assert.equal(kms.calls.Encrypt, 1);
  });

  test("throttling that outlasts the attempts fails as throttled", async () => {
    const { arn } = kms.createKey();
    const aws = provider(arn, { maxAttempts: 2 });
    kms.throttleNext(2);
    const error = await failure(aws.checkHealth());
    assert.equal(error.errorClass, "throttled");
    assert.match(
      error.message,
      /throttled DescribeKey .* after 2 attempts .*raise the account's KMS request quota/,
    );
    assert.equal(kms.calls.DescribeKey, 2);
  });

  test("throttling until the deadline is still reported as throttled, not as a timeout", async () => {
    const { arn } = kms.createKey();
    const aws = provider(arn, { maxAttempts: 10, timeoutMs: 300 });
    kms.throttleNext(50);
    const started = Date.now();
    const error = await failure(aws.checkHealth());
    assert.equal(error.errorClass, "throttled");
    assert.match(error.message, /until the 300 ms deadline/);
    assert.ok(Date.now() - started < 2000);
  });

  test("500 KMSInternalException and 503 are retried, then fail as other", async () => {
    const { arn } = kms.createKey();
    const aws = provider(arn, { maxAttempts: 2 });
    kms.failNext(2, 500);
    const internal = await failure(aws.wrapKey(randomBytes(32), CONTEXT));
    assert.equal(internal.errorClass, "other");
    assert.match(internal.message, /KMSInternalException \(HTTP 500\) after 2 attempts/);
    assert.equal(kms.calls.Encrypt, 2);
    kms.failNext(2, 503);
    const unavailable = await failure(aws.checkHealth());
    assert.equal(unavailable.errorClass, "other");
    assert.match(unavailable.message, /DependencyTimeoutException \(HTTP 503\) after 2 attempts/);
    kms.failNext(1, 503);
    await aws.checkHealth();
  });

  test("a response slower than timeoutMs fails as other with a timeout message, quickly", async () => {
    const { arn } = kms.createKey();
    const aws = provider(arn, { timeoutMs: 200, maxAttempts: 3 });
    kms.delayResponses(5000);
    const started = Date.now();
    const error = await failure(aws.checkHealth());
    const elapsed = Date.now() - started;
    assert.equal(error.errorClass, "other");
    assert.match(
      error.message,
      /timed out after 200 ms: check network access to http:\/\/127\.0\.0\.1:/,
    );
    assert.ok(elapsed >= 150 && elapsed < 1500, `took ${elapsed} ms`);
  });

  test("the caller's abort signal cancels a call (other)", async () => {
    const { arn } = kms.createKey();
    const aws = provider(arn);
    kms.delayResponses(5000);
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 50);
    const error = await failure(aws.checkHealth(controller.signal));
    assert.equal(error.errorClass, "other");
    assert.match(error.message, /cancelled by the caller/);
  });

  test("a corrupted Encrypt response is detected when the wrapped key is unwrapped (corrupt)", async () => {
    const { arn } = kms.createKey();
    const aws = provider(arn);
    const key = randomBytes(32);
    kms.corruptNext(1, "flip");
    const wrapped = await aws.wrapKey(key, CONTEXT);
    const error = await failure(aws.unwrapKey(wrapped, CONTEXT));
    assert.equal(error.errorClass, "corrupt");
    assertNoSecret(error, key);
  });

  test("a Decrypt response of the wrong length is corrupt and does not reveal the bytes", async () => {
    const { arn } = kms.createKey();
    const aws = provider(arn);
    const key = randomBytes(32);
    const wrapped = await aws.wrapKey(key, CONTEXT);
    kms.corruptNext(1, "truncate");
    const error = await failure(aws.unwrapKey(wrapped, CONTEXT));
    assert.equal(error.errorClass, "corrupt");
    assert.match(error.message, /returned 31 bytes for aws:bWFzdGVyLWtleS1p, not a 32-byte key/);
    assertNoSecret(error, key, key.subarray(0, 31));
    // A correct-length key configured differently is refused the same way.
    const wide = provider(arn, { keyLength: 64 });
    assert.equal(await outcome(wide.unwrapKey(wrapped, CONTEXT)), "corrupt");
  });

  test("a wrong secret fails SigV4 verification: user, not retried", async () => {
    const { arn } = kms.createKey();
    const aws = provider(arn, {
      maxAttempts: 3,
      credentials: { ...kms.credentials, secretAccessKey: "not-the-secret" },
    });
    const error = await failure(aws.checkHealth());
    assert.equal(error.errorClass, "user");
    assert.match(
      error.message,
      /refused this daemon's credentials for kms:DescribeKey \(InvalidSignatureException\)/,
    );
    assert.ok(!error.message.includes("not-the-secret"));
    assert.equal(kms.rejectedSignatures, 1);
    assert.equal(kms.calls.DescribeKey, 0);
  });

  test("an unknown access key fails as user (UnrecognizedClientException)", async () => {
    const { arn } = kms.createKey();
    const aws = provider(arn, {
      credentials: { accessKeyId: "AKIAUNKNOWN000000000", secretAccessKey: "x" },
    });
    const error = await failure(aws.wrapKey(randomBytes(32), CONTEXT));
    assert.equal(error.errorClass, "user");
    assert.match(error.message, /UnrecognizedClientException/);
  });

  test("AWS_ENDPOINT_URL_KMS is honoured by the SDK when no endpoint is given", async () => {
    const { arn } = kms.createKey();
    process.env.AWS_ENDPOINT_URL_KMS = kms.endpoint;
    try {
      const aws = provider(arn, { endpoint: undefined });
      await aws.checkHealth();
      assert.equal(kms.calls.DescribeKey, 1);
    } finally {
      delete process.env.AWS_ENDPOINT_URL_KMS;
    }
  });

  test("wrapKey refuses a key of the wrong length before calling KMS", async () => {
    const { arn } = kms.createKey();
    await assert.rejects(provider(arn).wrapKey(randomBytes(31), CONTEXT), {
      code: "INVALID_MASTER_KEY",
      message: "the aws provider wraps 32-byte keys, not 31-byte ones",
    });
    assert.equal(kms.calls.Encrypt, 0);
  });

  test("unwrapKey refuses an empty wrapped key as corrupt without calling KMS", async () => {
    const { arn } = kms.createKey();
    assert.equal(await outcome(provider(arn).unwrapKey(new Uint8Array(0), CONTEXT)), "corrupt");
    assert.equal(kms.calls.Decrypt, 0);
  });

  test("close() is idempotent and later calls fail as other", async () => {
    const { arn } = kms.createKey();
    const aws = provider(arn);
    await aws.close();
    await aws.close();
    const error = await failure(aws.checkHealth());
    assert.equal(error.errorClass, "other");
    assert.match(error.message, /closed/);
  });
});

describe("AwsKmsProvider without kms:DescribeKey", () => {
  function unDescribed(arn: string) {
    const said: string[] = [];
    const aws = provider(arn, { logger: { info: (message) => said.push(message) } });
    return { aws, said };
  }

  test("health decrypts the last wrapped key, or a probe before any; the fallback is said once", async () => {
    const { arn } = kms.createKey();
    kms.permitOnly(["Encrypt", "Decrypt"]);
    const { aws, said } = unDescribed(arn);
    await aws.checkHealth();
    assert.deepEqual(kms.calls, { Encrypt: 1, Decrypt: 1, DescribeKey: 1, GenerateDataKey: 0 });
    await aws.wrapKey(randomBytes(32), CONTEXT);
    await aws.checkHealth();
    await aws.checkHealth();
    // DescribeKey was asked once; every later check is one Decrypt of the last wrapped key.
    assert.deepEqual(kms.calls, { Encrypt: 2, Decrypt: 3, DescribeKey: 1, GenerateDataKey: 0 });
    assert.equal(said.length, 1);
    assert.match(
      said[0] ?? "",
      new RegExp(
        `^aws: kms:DescribeKey is not granted on ${arn}: health checks decrypt the last wrapped key instead .*Grant kms:DescribeKey`,
      ),
    );
  });

  test("a disabled key, a revoked kms:Decrypt or no access at all still fail health as user", async () => {
    const { arn } = kms.createKey();
    kms.permitOnly(["Encrypt", "Decrypt"]);
    const { aws } = unDescribed(arn);
    await aws.wrapKey(randomBytes(32), CONTEXT);
    kms.disableKey(arn);
    const disabled = await failure(aws.checkHealth());
    assert.equal(disabled.errorClass, "user");
    assert.match(disabled.message, /is disabled.*aws kms enable-key/);
    kms.enableKey(arn);
    await aws.checkHealth();
    kms.permitOnly(["Encrypt"]);
    const revoked = await failure(aws.checkHealth());
    assert.equal(revoked.errorClass, "user");
    assert.match(revoked.message, new RegExp(`denied kms:Decrypt on ${arn}.*grant kms:Decrypt`));
    kms.permitOnly([]);
    assert.match((await failure(aws.checkHealth())).message, /denied kms:Decrypt/);
  });

  test("with DescribeKey granted, health is one DescribeKey and says nothing", async () => {
    const { arn } = kms.createKey();
    const { aws, said } = unDescribed(arn);
    await aws.checkHealth();
    assert.deepEqual(kms.calls, { Encrypt: 0, Decrypt: 0, DescribeKey: 1, GenerateDataKey: 0 });
    assert.deepEqual(said, []);
  });
});

describe("the README's IAM policies for the aws provider", () => {
  // Each command's policy as the README prints it, by the command named on the line before.
  const policies = new Map(
    [
      ...readFileSync(join(PACKAGE_ROOT, "README.md"), "utf8").matchAll(
        /^`(serve|keygen|rotate)`[^\n]*:\n\n```json\n([\s\S]*?)\n```/gm,
      ),
    ].map((match) => {
      const policy = JSON.parse(match[2] as string) as {
        Statement: { Effect: string; Action: string[]; Condition?: unknown }[];
      };
      const actions = policy.Statement.flatMap((statement) => {
        assert.equal(statement.Effect, "Allow");
        return statement.Action.map((action) => action.replace(/^kms:/, "") as Operation);
      });
      return [match[1] as string, actions] as const;
    }),
  );

  test("there is one for serve, keygen and rotate", () => {
    assert.deepEqual([...policies.keys()].sort(), ["keygen", "rotate", "serve"]);
    assert.deepEqual(policies.get("serve"), ["Decrypt"]);
  });

  for (const command of ["keygen", "rotate"]) {
    test(`${command}'s policy makes a keyring version, and each action in it is needed`, async () => {
      const { arn } = kms.createKey();
      const actions = policies.get(command) ?? [];
      kms.permitOnly(actions);
      const version = await generateVersion(provider(arn), arn, "primary");
      assert.equal(version.provider, "aws");
      for (const dropped of actions) {
        kms.permitOnly(actions.filter((action) => action !== dropped));
        const error = await failure(generateVersion(provider(arn), arn, "primary"));
        assert.match(error.message, new RegExp(`denied kms:${dropped} .*grant kms:${dropped}`));
      }
    });
  }

  test("serve's policy unwraps, and its health without DescribeKey passes", async () => {
    const { arn } = kms.createKey();
    const { wrappedKey, keyId } = await generateVersion(provider(arn), arn, "primary");
    kms.permitOnly(policies.get("serve") ?? []);
    const aws = provider(arn);
    const key = await aws.unwrapKey(Buffer.from(wrappedKey, "base64"), { keyId });
    assert.equal(key.length, 32);
    await aws.checkHealth();
    await failure(aws.wrapKey(randomBytes(32), { keyId }));
  });
});

describe("AwsKmsProvider and the SDK's Node-version notice", () => {
  // A fresh process: the SDK says it once per process, and this one has made clients already.
  function warningsOf(environment: NodeJS.ProcessEnv): string {
    const script = [
      `const { AwsKmsProvider } = await import(${JSON.stringify(join(PACKAGE_ROOT, "providers/aws.ts"))});`,
      `const aws = new AwsKmsProvider({ keyRef: ${JSON.stringify(`arn:aws:kms:${REGION}:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab`)} });`,
      'process.emitWarning("a warning of the application");',
      "await aws.close();",
    ].join("\n");
    const child = spawnSync(
      process.execPath,
      ["--import", "tsx", "--input-type=module", "--eval", script],
      { cwd: PACKAGE_ROOT, env: environment, encoding: "utf8" },
    );
    assert.equal(child.status, 0, child.stderr);
    return child.stderr;
  }
  const { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: _, ...unset } = process.env;

  test("is kept off stderr, and the application's own warnings are not", () => {
    const stderr = warningsOf(unset);
    assert.doesNotMatch(stderr, /NodeVersionSupportWarning|AWS SDK for JavaScript/);
    assert.match(stderr, /Warning: a warning of the application/);
  });

  test("an operator who sets the SDK's variable decides", {
    skip: !process.version.startsWith("v20."),
  }, () => {
    const stderr = warningsOf({
      ...unset,
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "false",
    });
    assert.match(stderr, /NodeVersionSupportWarning/);
  });
});

describe("AwsKmsProvider configuration", () => {
  const arn = "arn:aws:kms:eu-west-3:111122223333:key/0b6a5c9e-2f0e-4a57-9a0d-4c1d7f2a9e11";

  test("a key reference that is no key id, ARN or alias is refused at construction", () => {
    for (const keyRef of ["", "my-key", "alias/", "arn:aws:s3:::bucket", "key/123"]) {
      assert.throws(() => new AwsKmsProvider({ keyRef }), {
        code: "INVALID_CONFIG",
        message: /is not a key id, key ARN, alias\/<name> or alias ARN/,
      });
    }
  });

  test("a region that contradicts the key ARN is refused", () => {
    assert.throws(() => new AwsKmsProvider({ keyRef: arn, region: "us-east-1" }), {
      code: "INVALID_CONFIG",
      message: /^aws region: us-east-1 does not match the region of key .* \(eu-west-3\)/,
    });
  });

  test("timeoutMs, maxAttempts and endpoint are validated", () => {
    assert.throws(() => new AwsKmsProvider({ keyRef: arn, timeoutMs: 0 }), {
      code: "INVALID_CONFIG",
      message: /^aws provider option timeoutMs: 0 is not an integer from/,
    });
    assert.throws(() => new AwsKmsProvider({ keyRef: arn, maxAttempts: 0 }), {
      code: "INVALID_CONFIG",
      message: /^aws provider option maxAttempts: 0 is not an integer from/,
    });
    assert.throws(() => new AwsKmsProvider({ keyRef: arn, endpoint: "kms.local" }), {
      code: "INVALID_CONFIG",
      message: /not an http\(s\) URL/,
    });
  });

  test("createProvider (the registry entry point) builds an aws provider for the key", async () => {
    const aws = createProvider(arn, { timeoutMs: 1000, maxAttempts: 2, environment: {} });
    assert.equal(aws.name, "aws");
    assert.deepEqual(aws.describe(), { provider: "aws", keyRef: arn });
    await aws.close();
  });
});

describe("classifyAwsError", () => {
  const facts = {
    operation: "Decrypt" as const,
    key: "arn:aws:kms:eu-west-3:111122223333:key/k",
    keyRef: "alias/app",
    timeoutMs: 5000,
    endpoint: "https://kms.eu-west-3.amazonaws.com",
    credentials: awsCredentialSource(
      {
        AWS_ROLE_ARN: "arn:aws:iam::111122223333:role/kms-envelope",
        AWS_WEB_IDENTITY_TOKEN_FILE: "/var/run/secrets/eks.amazonaws.com/serviceaccount/token",
      },
      false,
    ),
    cancelled: false,
    timedOut: false,
  };
  const named = (name: string, httpStatusCode?: number) =>
    Object.assign(new Error("m"), { name, $metadata: { httpStatusCode } });
  const cases: [unknown, ProviderErrorClass][] = [
    [named("AccessDeniedException", 400), "user"],
    [named("DisabledException", 400), "user"],
    [named("KMSInvalidStateException", 400), "user"],
    [named("NotFoundException", 400), "user"],
    [named("IncorrectKeyException", 400), "user"],
    [named("KeyUnavailableException", 400), "user"],
    [named("ExpiredTokenException", 400), "user"],
    [named("ThrottlingException", 400), "throttled"],
    [named("LimitExceededException", 400), "throttled"],
    [named("SomethingNew", 429), "throttled"],
    [named("InvalidCiphertextException", 400), "corrupt"],
    [named("KMSInternalException", 500), "other"],
    [named("DependencyTimeoutException", 503), "other"],
    [named("CredentialsProviderError"), "user"],
    [named("InvalidIdentityTokenException", 400), "user"],
    [named("IDPRejectedClaimException", 403), "user"],
    [named("AccessDenied", 403), "user"],
    [named("IDPCommunicationErrorException", 400), "other"],
    [
      Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:1"), { code: "ECONNREFUSED" }),
      "other",
    ],
    ["not even an error", "other"],
  ];
  for (const [error, expected] of cases) {
    test(`${(error as Error).name ?? String(error)} → ${expected}`, () => {
      assert.equal(classifyAwsError(error, facts).errorClass, expected);
    });
  }

  test("a refused or expired credential names its source and what to fix", () => {
    assert.match(
      classifyAwsError(named("ExpiredTokenException", 400), facts).message,
      /\(ExpiredTokenException\), the web identity role arn:aws:iam::111122223333:role\/kms-envelope \(IRSA, token file \/var\/run\/secrets\/eks\.amazonaws\.com\/serviceaccount\/token\): they expired and were not renewed; check that the role's trust policy admits this service account/,
    );
    assert.match(
      classifyAwsError(named("InvalidIdentityTokenException", 400), facts).message,
      /^AWS STS refused to issue credentials for kms:Decrypt \(InvalidIdentityTokenException\) from the web identity role /,
    );
  });

  test("the credential source follows the SDK chain's order, naming no secret", () => {
    const secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    const sources = [
      [{}, /instance profile/],
      [
        { AWS_CONTAINER_CREDENTIALS_FULL_URI: "http://169.254.170.23/v1/credentials" },
        /container credentials endpoint http:\/\/169\.254\.170\.23\/v1\/credentials \(EKS Pod Identity/,
      ],
      [
        { AWS_CONTAINER_CREDENTIALS_RELATIVE_URI: "/v2/credentials/x" },
        /endpoint http:\/\/169\.254\.170\.2\/v2\/credentials\/x/,
      ],
      [
        { AWS_ROLE_ARN: "arn:aws:iam::1:role/r", AWS_WEB_IDENTITY_TOKEN_FILE: "/t" },
        /web identity role arn:aws:iam::1:role\/r/,
      ],
      [
        { AWS_ACCESS_KEY_ID: "AKIAEXAMPLE", AWS_SECRET_ACCESS_KEY: secret },
        /^the access key in AWS_ACCESS_KEY_ID$/,
      ],
      [{ AWS_ACCESS_KEY_ID: "ASIAEXAMPLE", AWS_SESSION_TOKEN: secret }, /temporary access key/],
      [{ AWS_PROFILE: "prod", AWS_ACCESS_KEY_ID: "AKIAEXAMPLE" }, /profile prod/],
    ] as const;
    for (const [environment, expected] of sources) {
      const source = awsCredentialSource(environment, false);
      assert.match(source.name, expected);
      assert.ok(!`${source.name} ${source.fix}`.includes(secret));
      assert.ok(!`${source.name} ${source.fix}`.includes("AKIAEXAMPLE"));
    }
  });

  test("an alias key reference hints at a retargeted alias on IncorrectKeyException", () => {
    assert.match(
      classifyAwsError(named("IncorrectKeyException", 400), facts).message,
      /was the alias retargeted\?/,
    );
  });
});
