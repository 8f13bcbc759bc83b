import assert from "node:assert/strict";
import { request } from "node:http";
import { after, afterEach, before, describe, test } from "node:test";
import {
  DecryptCommand,
  DescribeKeyCommand,
  EncryptCommand,
  GenerateDataKeyCommand,
  KMSClient,
  KMSServiceException,
} from "@aws-sdk/client-kms";
import { AwsKmsEmulator } from "../../emulators/aws-kms/server.js";
import { SIGNATURE_MISMATCH_MESSAGE, verifySignature } from "../../emulators/aws-kms/sigv4.js";

let kms: AwsKmsEmulator;
const clients: KMSClient[] = [];

before(async () => {
  kms = await AwsKmsEmulator.start();
});
after(async () => {
  await kms.close();
});
afterEach(() => {
  kms.clearFaults();
  kms.resetCounters();
  for (const client of clients.splice(0)) client.destroy();
});

/** The unmodified SDK client pointed at the emulator, no retries (faults stay deterministic). */
function client(credentials = kms.credentials): KMSClient {
  const created = new KMSClient({
    region: kms.region,
    endpoint: kms.endpoint,
    credentials,
    maxAttempts: 1,
  });
  clients.push(created);
  return created;
}

const PLAINTEXT = Buffer.from("the quick brown fox");

/** Asserts an SDK call fails with this error name, HTTP status and (optionally) message. */
async function rejectsWith(
  promise: Promise<unknown>,
  name: string,
  status: number,
  message?: RegExp,
): Promise<void> {
  try {
    await promise;
  } catch (error) {
    assert.ok(
      error instanceof KMSServiceException,
      `expected a KMSServiceException, got ${String(error)}`,
    );
    assert.equal(error.name, name);
    assert.equal(error.$metadata.httpStatusCode, status);
    assert.match(error.$metadata.requestId ?? "", /^[0-9a-f-]{36}$/);
    if (message !== undefined) assert.match(error.message, message);
    return;
  }
  assert.fail(`expected ${name}`);
}

describe("AWS KMS emulator: the SDK's view", () => {
  test("Encrypt/Decrypt round trip; Decrypt needs no KeyId; KeyId answers are the key ARN", async () => {
    const { arn, keyId } = kms.createKey();
    const sdk = client();
    const encrypted = await sdk.send(new EncryptCommand({ KeyId: keyId, Plaintext: PLAINTEXT }));
    assert.equal(encrypted.KeyId, arn);
    assert.equal(encrypted.EncryptionAlgorithm, "SYMMETRIC_DEFAULT");
    assert.match(encrypted.$metadata.requestId ?? "", /^[0-9a-f-]{36}$/);
    const blob = encrypted.CiphertextBlob ?? new Uint8Array();
    assert.ok(Buffer.from(blob).includes(Buffer.from(keyId)), "the blob names its key");
    assert.ok(!Buffer.from(blob).includes(PLAINTEXT));
    const decrypted = await sdk.send(new DecryptCommand({ CiphertextBlob: blob }));
    assert.deepEqual(Buffer.from(decrypted.Plaintext ?? []), PLAINTEXT);
    assert.equal(decrypted.KeyId, arn);
  });

  test("the encryption context is bound: a different or missing context is InvalidCiphertextException", async () => {
    const { arn } = kms.createKey();
    const sdk = client();
    const context = { tenant: "a", purpose: "test" };
    const { CiphertextBlob } = await sdk.send(
      new EncryptCommand({ KeyId: arn, Plaintext: PLAINTEXT, EncryptionContext: context }),
    );
    const reordered = { purpose: "test", tenant: "a" };
    const ok = await sdk.send(new DecryptCommand({ CiphertextBlob, EncryptionContext: reordered }));
    assert.deepEqual(Buffer.from(ok.Plaintext ?? []), PLAINTEXT);
    await rejectsWith(
      sdk.send(
        new DecryptCommand({ CiphertextBlob, EncryptionContext: { tenant: "b", purpose: "test" } }),
      ),
      "InvalidCiphertextException",
      400,
    );
    await rejectsWith(
      sdk.send(new DecryptCommand({ CiphertextBlob })),
      "InvalidCiphertextException",
      400,
    );
  });

  test("every byte of a blob is authenticated (tamper one byte at a time)", async () => {
    const { arn } = kms.createKey();
    const sdk = client();
    const { CiphertextBlob = new Uint8Array() } = await sdk.send(
      new EncryptCommand({ KeyId: arn, Plaintext: PLAINTEXT }),
    );
    for (let index = 0; index < CiphertextBlob.length; index += 1) {
      const tampered = Uint8Array.from(CiphertextBlob);
      tampered[index] = (tampered[index] ?? 0) ^ 0x40;
      await assert.rejects(
        sdk.send(new DecryptCommand({ CiphertextBlob: tampered })),
        (error: Error) => ["InvalidCiphertextException", "NotFoundException"].includes(error.name),
      );
    }
  });

  test("Decrypt with the KeyId of another key is IncorrectKeyException", async () => {
    const first = kms.createKey();
    const second = kms.createKey();
    const sdk = client();
    const { CiphertextBlob } = await sdk.send(
      new EncryptCommand({ KeyId: first.arn, Plaintext: PLAINTEXT }),
    );
    await rejectsWith(
      sdk.send(new DecryptCommand({ CiphertextBlob, KeyId: second.arn })),
      "IncorrectKeyException",
      400,
    );
  });

  test("keys are addressed by key id, key ARN, alias name and alias ARN; unknown ones are NotFoundException", async () => {
    const { arn, keyId } = kms.createKey();
    const aliasArn = kms.createAlias("alias/emulator-refs", keyId);
    assert.equal(aliasArn, `arn:aws:kms:${kms.region}:${kms.accountId}:alias/emulator-refs`);
    const sdk = client();
    for (const reference of [keyId, arn, "alias/emulator-refs", aliasArn]) {
      const { KeyMetadata } = await sdk.send(new DescribeKeyCommand({ KeyId: reference }));
      assert.equal(KeyMetadata?.Arn, arn);
      assert.equal(KeyMetadata?.KeyState, "Enabled");
      assert.ok(KeyMetadata?.CreationDate instanceof Date);
    }
    await rejectsWith(
      sdk.send(new DescribeKeyCommand({ KeyId: "alias/missing" })),
      "NotFoundException",
      400,
      /alias\/missing is not found/,
    );
    await rejectsWith(
      sdk.send(new DescribeKeyCommand({ KeyId: "00000000-0000-4000-8000-000000000000" })),
      "NotFoundException",
      400,
      /does not exist/,
    );
    const otherRegion = arn.replace(kms.region, "ap-south-2");
    await rejectsWith(
      sdk.send(new DescribeKeyCommand({ KeyId: otherRegion })),
      "NotFoundException",
      400,
    );
  });

  test("key states: Disabled → DisabledException, PendingDeletion → KMSInvalidStateException, deleted → NotFoundException", async () => {
    const { arn } = kms.createKey();
    const sdk = client();
    const { CiphertextBlob } = await sdk.send(
      new EncryptCommand({ KeyId: arn, Plaintext: PLAINTEXT }),
    );
    kms.disableKey(arn);
    await rejectsWith(
      sdk.send(new EncryptCommand({ KeyId: arn, Plaintext: PLAINTEXT })),
      "DisabledException",
      400,
      /is disabled/,
    );
    await rejectsWith(sdk.send(new DecryptCommand({ CiphertextBlob })), "DisabledException", 400);
    assert.equal(
      (await sdk.send(new DescribeKeyCommand({ KeyId: arn }))).KeyMetadata?.Enabled,
      false,
    );
    kms.scheduleDeletion(arn);
    await rejectsWith(
      sdk.send(new DecryptCommand({ CiphertextBlob })),
      "KMSInvalidStateException",
      400,
      /pending deletion/,
    );
    const described = await sdk.send(new DescribeKeyCommand({ KeyId: arn }));
    assert.equal(described.KeyMetadata?.KeyState, "PendingDeletion");
    assert.ok(described.KeyMetadata?.DeletionDate instanceof Date);
    kms.enableKey(arn);
    await sdk.send(new DecryptCommand({ CiphertextBlob }));
    kms.deleteKey(arn);
    await rejectsWith(sdk.send(new DecryptCommand({ CiphertextBlob })), "NotFoundException", 400);
    await rejectsWith(sdk.send(new DescribeKeyCommand({ KeyId: arn })), "NotFoundException", 400);
  });

  test("denyAccess → AccessDeniedException naming the action and the key", async () => {
    const { arn } = kms.createKey();
    kms.denyAccess(true);
    await rejectsWith(
      client().send(new EncryptCommand({ KeyId: arn, Plaintext: PLAINTEXT })),
      "AccessDeniedException",
      400,
      new RegExp(`kms:Encrypt on resource: ${arn}`),
    );
  });

  test("GenerateDataKey returns a key and a blob that Decrypt opens", async () => {
    const { arn } = kms.createKey();
    const sdk = client();
    const generated = await sdk.send(
      new GenerateDataKeyCommand({ KeyId: arn, KeySpec: "AES_256" }),
    );
    assert.equal(generated.Plaintext?.length, 32);
    const { Plaintext } = await sdk.send(
      new DecryptCommand({ CiphertextBlob: generated.CiphertextBlob }),
    );
    assert.deepEqual(Buffer.from(Plaintext ?? []), Buffer.from(generated.Plaintext ?? []));
    const sized = await sdk.send(new GenerateDataKeyCommand({ KeyId: arn, NumberOfBytes: 7 }));
    assert.equal(sized.Plaintext?.length, 7);
  });

  test("faults: ThrottlingException (unmodelled: a generic KMSServiceException), 500, 503, in script order", async () => {
    const { arn } = kms.createKey();
    const sdk = client();
    kms.throttleNext(1);
    kms.failNext(1, 500);
    kms.failNext(1, 503);
    const describe = () => sdk.send(new DescribeKeyCommand({ KeyId: arn }));
    await rejectsWith(describe(), "ThrottlingException", 400, /exceeded the rate/);
    await rejectsWith(describe(), "KMSInternalException", 500);
    await rejectsWith(describe(), "DependencyTimeoutException", 503);
    await describe();
    assert.equal(kms.calls.DescribeKey, 4);
  });

  test("corruptNext damages the next blob-bearing response only", async () => {
    const { arn } = kms.createKey();
    const sdk = client();
    const { CiphertextBlob } = await sdk.send(
      new EncryptCommand({ KeyId: arn, Plaintext: PLAINTEXT }),
    );
    kms.corruptNext(1, "flip");
    const flipped = await sdk.send(new DecryptCommand({ CiphertextBlob }));
    assert.notDeepEqual(Buffer.from(flipped.Plaintext ?? []), PLAINTEXT);
    kms.corruptNext(1, "truncate");
    const truncated = await sdk.send(new DecryptCommand({ CiphertextBlob }));
    assert.equal(truncated.Plaintext?.length, PLAINTEXT.length - 1);
    const clean = await sdk.send(new DecryptCommand({ CiphertextBlob }));
    assert.deepEqual(Buffer.from(clean.Plaintext ?? []), PLAINTEXT);
  });

  test("counters count calls per operation", async () => {
    const { arn } = kms.createKey();
    const sdk = client();
    await sdk.send(new DescribeKeyCommand({ KeyId: arn }));
    await sdk.send(new EncryptCommand({ KeyId: arn, Plaintext: PLAINTEXT }));
    await sdk.send(new EncryptCommand({ KeyId: arn, Plaintext: PLAINTEXT }));
    assert.deepEqual(kms.calls, { Encrypt: 2, Decrypt: 0, DescribeKey: 1, GenerateDataKey: 0 });
  });
});

describe("AWS KMS emulator: SigV4 verification", () => {
  test("a wrong secret is 400 InvalidSignatureException with the service's message", async () => {
    const { arn } = kms.createKey();
    const sdk = client({ ...kms.credentials, secretAccessKey: "wrong-secret" });
    await rejectsWith(
      sdk.send(new DescribeKeyCommand({ KeyId: arn })),
      "InvalidSignatureException",
      400,
      /signature we calculated does not match/,
    );
    assert.equal(kms.rejectedSignatures, 1);
    assert.equal(kms.calls.DescribeKey, 0);
  });

  test("an unknown access key is 400 UnrecognizedClientException", async () => {
    const sdk = client({
      accessKeyId: "AKIAUNKNOWN000000000",
      secretAccessKey: kms.credentials.secretAccessKey,
    });
    await rejectsWith(
      sdk.send(new DescribeKeyCommand({ KeyId: "alias/x" })),
      "UnrecognizedClientException",
      400,
      /security token included in the request is invalid/,
    );
  });

  test("a body changed after signing fails (the payload hash is verified)", async () => {
    const { arn } = kms.createKey();
    const sdk = client();
    type Step = (args: { request: unknown }) => Promise<unknown>;
    const tamper =
      (next: Step): Step =>
      async (args) => {
        const http = args.request as { body?: unknown };
        const text =
          typeof http.body === "string"
            ? http.body
            : new TextDecoder().decode(http.body as Uint8Array);
        assert.ok(text.includes(arn));
        // Same length (Content-Length is signed too), one character different.
        const changed = `${arn.slice(0, -1)}${arn.endsWith("0") ? "1" : "0"}`;
        http.body = Buffer.from(text.replace(arn, changed), "utf8");
        return next(args);
      };
    type Middleware = Parameters<typeof sdk.middlewareStack.addRelativeTo>[0];
    sdk.middlewareStack.addRelativeTo(tamper as unknown as Middleware, {
      relation: "after",
      toMiddleware: "httpSigningMiddleware",
      name: "tamperAfterSigning",
    });
    await rejectsWith(
      sdk.send(new DescribeKeyCommand({ KeyId: arn })),
      "InvalidSignatureException",
      400,
    );
  });

  test("a region outside the credential scope is refused", async () => {
    const sdk = new KMSClient({
      region: "us-west-2",
      endpoint: kms.endpoint,
      credentials: kms.credentials,
      maxAttempts: 1,
    });
    clients.push(sdk);
    await rejectsWith(
      sdk.send(new DescribeKeyCommand({ KeyId: "alias/x" })),
      "InvalidSignatureException",
      400,
      /scoped to a valid region/,
    );
  });

  test("an unsigned request is 400 MissingAuthenticationTokenException with x-amzn-RequestId", async () => {
    const { status, headers, body } = await post(
      kms.endpoint,
      { "content-type": "application/x-amz-json-1.1", "x-amz-target": "TrentService.DescribeKey" },
      "{}",
    );
    assert.equal(status, 400);
    assert.match(String(headers["x-amzn-requestid"]), /^[0-9a-f-]{36}$/);
    assert.equal(headers["content-type"], "application/x-amz-json-1.1");
    assert.deepEqual(JSON.parse(body), {
      __type: "MissingAuthenticationTokenException",
      message: "Missing Authentication Token",
    });
  });

  test("verifySignature reproduces the AWS SigV4 test suite (get-vanilla, post-vanilla)", () => {
    const credentials = {
      accessKeyId: "AKIDEXAMPLE",
      secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    };
    const now = new Date("2015-08-30T12:36:00Z");
    const vector = (method: string, signature: string) => ({
      method,
      url: "/",
      body: Buffer.alloc(0),
      headers: {
        host: "example.amazonaws.com",
        "x-amz-date": "20150830T123600Z",
        authorization: `AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=${signature}`,
      },
    });
    const getVanilla = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";
    const postVanilla = "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b";
    verifySignature(vector("GET", getVanilla), credentials, "us-east-1", "service", now);
    verifySignature(vector("POST", postVanilla), credentials, "us-east-1", "service", now);
    const wrong = `${getVanilla.slice(0, 63)}0`;
    assert.throws(
      () => verifySignature(vector("GET", wrong), credentials, "us-east-1", "service", now),
      { code: "InvalidSignatureException", status: 400, message: SIGNATURE_MISMATCH_MESSAGE },
    );
    assert.throws(
      () =>
        verifySignature(
          vector("GET", getVanilla),
          credentials,
          "us-east-1",
          "service",
          new Date("2015-08-30T12:42:00Z"),
        ),
      {
        code: "InvalidSignatureException",
        message: /^Signature expired: 20150830T123600Z is now earlier than/,
      },
    );
  });
});

describe("AWS KMS emulator: short-lived credentials", () => {
  function send(
    method: string,
    path: string,
    headers: Record<string, string>,
    body = "",
  ): Promise<{ status: number; text: string }> {
    return new Promise((resolve, reject) => {
      const outgoing = request(`${kms.endpoint}${path}`, { method, headers }, (incoming) => {
        let text = "";
        incoming.on("data", (chunk: Buffer) => (text += chunk.toString()));
        incoming.on("end", () => resolve({ status: incoming.statusCode ?? 0, text }));
      });
      outgoing.on("error", reject);
      outgoing.end(body);
    });
  }
  const form = (token: string) =>
    new URLSearchParams({
      Action: "AssumeRoleWithWebIdentity",
      Version: "2011-06-15",
      RoleArn: kms.issuer.roleArn,
      RoleSessionName: "s",
      WebIdentityToken: token,
    }).toString();
  const formHeaders = { "content-type": "application/x-www-form-urlencoded; charset=utf-8" };

  test("STS answers AssumeRoleWithWebIdentity in the query protocol's XML, refusals as ErrorResponse", async () => {
    kms.issuer.acceptWebIdentityToken("projected");
    const issued = await send("POST", "/", formHeaders, form("projected"));
    assert.equal(issued.status, 200);
    assert.match(
      issued.text,
      /<AssumeRoleWithWebIdentityResult>.*<Credentials><AccessKeyId>ASIA[0-9A-F]{16}<\/AccessKeyId><SecretAccessKey>.+<\/SecretAccessKey><SessionToken>.+<\/SessionToken><Expiration>\d{4}-\d\d-\d\dT[\d:.]+Z<\/Expiration><\/Credentials>/,
    );
    const refused = await send("POST", "/", formHeaders, form("another"));
    assert.equal(refused.status, 400);
    assert.match(
      refused.text,
      /^<ErrorResponse xmlns="https:\/\/sts\.amazonaws\.com\/doc\/2011-06-15\/"><Error><Type>Sender<\/Type><Code>InvalidIdentityToken<\/Code>/,
    );
    assert.equal(kms.issuer.issued.webIdentity, 1);
  });

  test("the container endpoint needs the agent token; KMS takes what was issued until it expires", async () => {
    kms.issuer.acceptContainerToken("agent");
    assert.equal((await send("GET", "/v1/credentials", {})).status, 401);
    kms.issuer.lifetimeMs = 1_000;
    const issued = await send("GET", "/v1/credentials", { authorization: "agent" });
    assert.equal(issued.status, 200);
    const body = JSON.parse(issued.text) as Record<string, string>;
    assert.match(body.Expiration ?? "", /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    const { arn } = kms.createKey();
    const temporary = client({
      accessKeyId: body.AccessKeyId ?? "",
      secretAccessKey: body.SecretAccessKey ?? "",
      sessionToken: body.Token ?? "",
    });
    await temporary.send(new DescribeKeyCommand({ KeyId: arn }));
    await new Promise((resolve) =>
      setTimeout(resolve, Date.parse(body.Expiration ?? "") - Date.now() + 50),
    );
    await rejectsWith(
      temporary.send(new DescribeKeyCommand({ KeyId: arn })),
      "ExpiredTokenException",
      400,
      /^The security token included in the request is expired$/,
    );
    assert.equal(kms.issuer.expiredUses, 1);
    kms.issuer.revoke();
    await rejectsWith(
      temporary.send(new DescribeKeyCommand({ KeyId: arn })),
      "UnrecognizedClientException",
      400,
    );
    kms.issuer.lifetimeMs = 3_600_000;
  });
});

describe("AWS KMS emulator: lifecycle", () => {
  test("listens on loopback only and close() is idempotent", async () => {
    const own = await AwsKmsEmulator.start();
    assert.match(own.endpoint, /^http:\/\/127\.0\.0\.1:\d+$/);
    await own.close();
    await own.close();
  });

  test("close() ends a delayed response at once", async () => {
    const own = await AwsKmsEmulator.start();
    own.delayResponses(10_000);
    const sdk = new KMSClient({
      region: own.region,
      endpoint: own.endpoint,
      credentials: own.credentials,
      maxAttempts: 1,
    });
    clients.push(sdk);
    const pending = sdk
      .send(new DescribeKeyCommand({ KeyId: "alias/x" }))
      .catch((error: Error) => error);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const started = Date.now();
    await own.close();
    assert.ok((await pending) instanceof Error);
    assert.ok(Date.now() - started < 1000);
  });

  test("control inputs are bounded", () => {
    assert.throws(() => kms.delayResponses(60_000), RangeError);
    assert.throws(() => kms.throttleNext(20_000), RangeError);
    assert.throws(() => kms.createAlias("not-an-alias", "alias/x"), RangeError);
  });
});

function post(
  endpoint: string,
  headers: Record<string, string>,
  body: string,
): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    const call = request(`${endpoint}/`, { method: "POST", headers }, (response) => {
      let text = "";
      response.setEncoding("utf8");
      response.on("data", (chunk: string) => (text += chunk));
      response.on("end", () =>
        resolve({ status: response.statusCode ?? 0, headers: response.headers, body: text }),
      );
    });
    call.on("error", reject);
    call.end(body);
  });
}
