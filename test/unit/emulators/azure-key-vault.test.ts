import assert from "node:assert/strict";
import { constants, createPublicKey, publicEncrypt, randomBytes } from "node:crypto";
import { request } from "node:https";
import { after, before, beforeEach, describe, test } from "node:test";
import type { AccessToken, TokenCredential } from "@azure/identity";
import {
  CryptographyClient,
  type CryptographyClientOptions,
  KeyClient,
} from "@azure/keyvault-keys";
import { AzureKeyVaultEmulator } from "../../emulators/azure-key-vault/server.js";

let emulator: AzureKeyVaultEmulator;
let options: CryptographyClientOptions;
let credential: TokenCredential;

before(async () => {
  // The SDK's local operations need the KeyBundle, so this caller may read keys; the default
  // (no `get`) has its own test below.
  emulator = await AzureKeyVaultEmulator.start({
    keyPermissions: ["get", "wrapKey", "unwrapKey", "encrypt", "decrypt"],
  });
  credential = {
    getToken: async (): Promise<AccessToken> => ({
      token: emulator.token,
      expiresOnTimestamp: Date.now() + 3_600_000,
    }),
  };
  options = {
    tlsOptions: { ca: emulator.ca },
    disableChallengeResourceVerification: true,
    retryOptions: { retryDelayInMs: 5, maxRetries: 1 },
  };
});

after(() => emulator.close());
beforeEach(() => emulator.reset());

interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: { error?: { code?: string; message?: string; innererror?: { code?: string } } };
}

function credentialFor(vault: AzureKeyVaultEmulator): TokenCredential {
  return {
    getToken: async (): Promise<AccessToken> => ({
      token: vault.token,
      expiresOnTimestamp: Date.now() + 3_600_000,
    }),
  };
}

function raw(
  method: string,
  path: string,
  init: { token?: string; body?: string | Buffer } = {},
  vault: AzureKeyVaultEmulator = emulator,
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const outgoing = request(
      `${vault.url}${path}`,
      {
        method,
        ca: vault.ca,
        headers: {
          "content-type": "application/json",
          ...(init.token !== undefined && { authorization: `Bearer ${init.token}` }),
        },
      },
      (incoming) => {
        const chunks: Buffer[] = [];
        incoming.on("data", (chunk: Buffer) => chunks.push(chunk));
        incoming.on("end", () =>
          resolve({
            status: incoming.statusCode ?? 0,
            headers: incoming.headers,
            body: JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}"),
          }),
        );
      },
    );
    outgoing.on("error", reject);
    outgoing.end(init.body);
  });
}

describe("Azure Key Vault emulator with the unmodified SDK", () => {
  test("CryptographyClient round-trips 16, 32 and 64-byte keys with RSA-OAEP-256 and RSA-OAEP", async () => {
    const key = emulator.createKey("sdk-round-trip");
    const client = new CryptographyClient(key.kid, credential, options);
    for (const algorithm of ["RSA-OAEP-256", "RSA-OAEP"] as const) {
      for (const size of [16, 32, 64]) {
        const plaintext = randomBytes(size);
        const wrapped = await client.wrapKey(algorithm, plaintext);
        assert.equal(wrapped.keyID, key.kid);
        const unwrapped = await client.unwrapKey(algorithm, wrapped.result);
        assert.deepEqual(Buffer.from(unwrapped.result), plaintext);
        const encrypted = await client.encrypt(algorithm, plaintext);
        assert.deepEqual(
          Buffer.from((await client.decrypt(algorithm, encrypted.result)).result),
          plaintext,
        );
      }
    }
    // RSA-OAEP (SHA-1) wraps and encrypts locally with the KeyBundle's n/e: only
    // RSA-OAEP-256 reaches the service for the protecting operations.
    assert.equal(emulator.counters.wrapkey, 3);
    assert.equal(emulator.counters.encrypt, 3);
    assert.equal(emulator.counters.unwrapkey, 6);
    assert.equal(emulator.counters.decrypt, 6);
  });

  test("the KeyBundle carries the real public key, key_ops and attributes", async () => {
    const key = emulator.createKey("bundle");
    const fetched = await new KeyClient(emulator.url, credential, options).getKey(key.name, {
      version: key.version,
    });
    assert.equal(fetched.id, key.kid);
    assert.equal(fetched.keyType, "RSA");
    assert.deepEqual(fetched.keyOperations, ["encrypt", "decrypt", "wrapKey", "unwrapKey"]);
    assert.equal(fetched.properties.enabled, true);
    assert.ok(fetched.properties.createdOn instanceof Date);
    const jwk = fetched.key as { n: Uint8Array; e: Uint8Array };
    const publicKey = createPublicKey({
      key: {
        kty: "RSA",
        n: Buffer.from(jwk.n).toString("base64url"),
        e: Buffer.from(jwk.e).toString("base64url"),
      },
      format: "jwk",
    });
    const plaintext = randomBytes(32);
    const ciphertext = publicEncrypt(
      { key: publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha256" },
      plaintext,
    );
    const client = new CryptographyClient(key.kid, credential, options);
    assert.deepEqual(
      Buffer.from((await client.unwrapKey("RSA-OAEP-256", ciphertext)).result),
      plaintext,
    );
  });

  test("a versionless GET answers the newest version", async () => {
    emulator.createKey("versions");
    const newest = emulator.addVersion("versions");
    const fetched = await new KeyClient(emulator.url, credential, options).getKey("versions");
    assert.equal(fetched.id, newest.kid);
  });

  test("a disabled version still wraps (public key) but refuses unwrap with 403 KeyDisabled", async () => {
    const key = emulator.createKey("disabled");
    emulator.disable(key);
    const client = new CryptographyClient(key.kid, credential, options);
    const wrapped = await client.wrapKey("RSA-OAEP-256", randomBytes(32));
    await assert.rejects(client.unwrapKey("RSA-OAEP-256", wrapped.result), {
      name: "RestError",
      statusCode: 403,
      code: "Forbidden",
      message: "Operation unwrapKey is not allowed on a disabled key.",
    });
    const fetched = await new KeyClient(emulator.url, credential, options).getKey(key.name);
    assert.equal(fetched.properties.enabled, false);
  });
});

describe("Azure Key Vault emulator wire behaviour", () => {
  test("an unauthenticated request gets 401 with a parseable Bearer challenge", async () => {
    const answer = await raw("GET", "/keys/anything?api-version=7.4");
    assert.equal(answer.status, 401);
    assert.equal(
      answer.headers["www-authenticate"],
      `Bearer authorization="https://login.microsoftonline.com/${emulator.tenantId}", resource="https://vault.azure.net"`,
    );
    assert.equal(answer.body.error?.code, "Unauthorized");
    const wrongToken = await raw("GET", "/keys/anything?api-version=7.4", { token: "wrong" });
    assert.equal(wrongToken.status, 401);
    assert.deepEqual([emulator.counters.unauthenticated, emulator.counters.rejectedTokens], [1, 1]);
  });

  test("errors use the Key Vault error body; any api-version is accepted but one is required", async () => {
    const token = emulator.token;
    const key = emulator.createKey("wire");
    const missing = await raw("GET", "/keys/wire/0123?api-version=2025-07-01", { token });
    assert.equal(missing.status, 404);
    assert.equal(missing.body.error?.code, "KeyNotFound");
    assert.match(
      missing.body.error?.message ?? "",
      /A key with \(name\/id\) wire\/0123 was not found/,
    );
    assert.equal((await raw("GET", "/keys/wire", { token })).status, 400);
    const badBody = await raw("POST", `/keys/wire/${key.version}/unwrapkey?api-version=7.4`, {
      token,
      body: JSON.stringify({ alg: "RSA-OAEP-256", value: "not base64url!" }),
    });
    assert.deepEqual([badBody.status, badBody.body.error?.code], [400, "BadParameter"]);
    const tooLarge = await raw("POST", `/keys/wire/${key.version}/unwrapkey?api-version=7.4`, {
      token,
      body: Buffer.alloc(128 * 1024),
    });
    assert.equal(tooLarge.status, 413);
  });

  test("throttling sends Retry-After; scripted faults are consumed in order", async () => {
    const token = emulator.token;
    emulator.createKey("faults");
    emulator.throttle(1, { retryAfterSeconds: 1 });
    emulator.fail(1, 503, { retryAfterSeconds: 0 });
    const throttled = await raw("GET", "/keys/faults?api-version=7.4", { token });
    assert.deepEqual([throttled.status, throttled.headers["retry-after"]], [429, "1"]);
    const unavailable = await raw("GET", "/keys/faults?api-version=7.4", { token });
    assert.deepEqual([unavailable.status, unavailable.headers["retry-after"]], [503, "0"]);
    assert.equal((await raw("GET", "/keys/faults?api-version=7.4", { token })).status, 200);
    assert.equal(emulator.counters.get, 3);
  });

  test("by default the caller may do everything but get, refused as an access policy refuses it", async () => {
    const local = await AzureKeyVaultEmulator.start({ vaultName: "contoso-keys" });
    try {
      const key = local.createKey("least");
      const token = local.token;
      const read = await raw("GET", `/keys/least/${key.version}?api-version=7.4`, { token }, local);
      assert.equal(read.status, 403);
      assert.deepEqual(Object.keys(read.body), ["error"]);
      assert.deepEqual(Object.keys(read.body.error ?? {}), ["code", "message", "innererror"]);
      assert.equal(read.body.error?.code, "Forbidden");
      assert.deepEqual(read.body.error?.innererror, { code: "AccessDenied" });
      assert.match(
        read.body.error?.message ?? "",
        new RegExp(
          `^The user, group or application 'appid=[0-9a-f-]{36};oid=[0-9a-f-]{36};iss=https://sts\\.windows\\.net/${local.tenantId}/' does not have keys get permission on key vault 'contoso-keys;location=westeurope'\\. For help resolving this issue, please see https://go\\.microsoft\\.com/fwlink/\\?linkid=2125287$`,
        ),
      );
      // A key that does not exist is refused the same way: the policy is checked first.
      assert.equal(
        (await raw("GET", "/keys/nothing?api-version=7.4", { token }, local)).status,
        403,
      );
      const client = new CryptographyClient(key.kid, credentialFor(local), {
        ...options,
        tlsOptions: { ca: local.ca },
      });
      const plaintext = randomBytes(32);
      const wrapped = await client.wrapKey("RSA-OAEP-256", plaintext);
      assert.deepEqual(
        Buffer.from((await client.unwrapKey("RSA-OAEP-256", wrapped.result)).result),
        plaintext,
      );
      // The SDK's first-use read was refused once; every operation then went to the service.
      assert.deepEqual([local.counters.get, local.counters.refusedPermissions], [3, 3]);
      local.grant("get");
      assert.equal(
        (await raw("GET", `/keys/least/${key.version}?api-version=7.4`, { token }, local)).status,
        200,
      );
      local.revoke("wrapKey");
      const refused = await raw(
        "POST",
        `/keys/least/${key.version}/wrapkey?api-version=7.4`,
        {
          token,
          body: JSON.stringify({ alg: "RSA-OAEP-256", value: "AAAA" }),
        },
        local,
      );
      assert.equal(refused.status, 403);
      assert.match(refused.body.error?.message ?? "", /does not have keys wrapKey permission/);
      local.reset();
      assert.equal(
        (await raw("GET", `/keys/least/${key.version}?api-version=7.4`, { token }, local)).status,
        403,
      );
    } finally {
      await local.close();
    }
  });

  test("close() releases held responses and drops connections", async () => {
    const local = await AzureKeyVaultEmulator.start();
    local.createKey("held");
    local.delay(30_000);
    const pending = new Promise<void>((resolve) => {
      const outgoing = request(`${local.url}/keys/held?api-version=7.4`, {
        ca: local.ca,
        headers: { authorization: `Bearer ${local.token}` },
      });
      outgoing.on("response", (incoming) => incoming.resume().on("end", resolve));
      outgoing.on("error", () => resolve());
      outgoing.end();
    });
    await new Promise((resolve) => setTimeout(resolve, 50));
    const started = Date.now();
    await local.close();
    await pending;
    assert.ok(Date.now() - started < 2_000);
  });
});
