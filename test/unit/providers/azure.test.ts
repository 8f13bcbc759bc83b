import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, beforeEach, describe, test } from "node:test";
import { inspect } from "node:util";
import type { AccessToken, GetTokenOptions, TokenCredential } from "@azure/identity";
import {
  AzureKeyVaultProvider,
  type AzureKeyVaultProviderOptions,
  createProvider,
  name as moduleName,
} from "../../../providers/azure.js";
import { azureCredentialSource } from "../../../providers/azure-credential.js";
import {
  algorithmOfWrappedKey,
  unreadableKeyAlgorithm,
  wrapAlgorithmFor,
} from "../../../providers/azure-key-checks.js";
import { parseAzureKeyRef } from "../../../providers/azure-key-ref.js";
import { ProviderError, type ProviderErrorClass } from "../../../providers/types.js";
import { KmsEnvelopeError } from "../../../src/errors.js";
import { AzureKeyVaultEmulator, type EmulatedKey } from "../../emulators/azure-key-vault/server.js";

const context = { keyId: "azure:test-key-id" };

/** A static test credential: hands out one token and records what the SDK asked for. */
class StaticCredential implements TokenCredential {
  readonly requests: { scopes: string[]; tenantId: string | undefined }[] = [];
  readonly #token: string;

  constructor(token: string) {
    this.#token = token;
  }

  async getToken(scopes: string | string[], options?: GetTokenOptions): Promise<AccessToken> {
    this.requests.push({ scopes: [scopes].flat(), tenantId: options?.tenantId });
    return { token: this.#token, expiresOnTimestamp: Date.now() + 3_600_000 };
  }
}

let emulator: AzureKeyVaultEmulator;
const providers: AzureKeyVaultProvider[] = [];

before(async () => {
  // These tests are of the checks a key read makes, so this identity has `get`; the
  // least-privilege suite below uses an emulator that refuses it, as by default.
  emulator = await AzureKeyVaultEmulator.start({ keyPermissions: ["get", "wrapKey", "unwrapKey"] });
});

after(async () => {
  await Promise.all(providers.map((provider) => provider.close()));
  await emulator.close();
});

beforeEach(() => emulator.reset());

let keyCount = 0;
function newKey(options?: Parameters<AzureKeyVaultEmulator["createKey"]>[1]): EmulatedKey {
  keyCount += 1;
  return emulator.createKey(`master-${keyCount}`, options);
}

function open(
  key: EmulatedKey | string,
  overrides: Partial<AzureKeyVaultProviderOptions> = {},
): { provider: AzureKeyVaultProvider; credential: StaticCredential } {
  const credential = new StaticCredential(emulator.token);
  const provider = new AzureKeyVaultProvider({
    keyRef: typeof key === "string" ? key : key.kid,
    credential,
    timeoutMs: 5_000,
    maxRetries: 2,
    clientOptions: {
      tlsOptions: { ca: emulator.ca },
      // The challenge names vault.azure.net, which 127.0.0.1 is not a subdomain of.
      disableChallengeResourceVerification: true,
      retryOptions: { retryDelayInMs: 5, maxRetryDelayInMs: 20 },
    },
    ...overrides,
  });
  providers.push(provider);
  return { provider, credential };
}

async function failure(promise: Promise<unknown>): Promise<ProviderError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof ProviderError, `a ProviderError, got ${inspect(error)}`);
    assert.equal(error.code, "PROVIDER_UNAVAILABLE");
    return error;
  }
  assert.fail("expected the call to fail");
}

async function refused(
  promise: Promise<unknown>,
  errorClass: ProviderErrorClass,
  says: RegExp,
): Promise<ProviderError> {
  const error = await failure(promise);
  assert.equal(error.errorClass, errorClass, error.message);
  assert.match(error.message, says);
  return error;
}

async function wrapped(provider: AzureKeyVaultProvider, key = randomBytes(32)) {
  return { key, wrapped: await provider.wrapKey(key, context) };
}

describe("AzureKeyVaultProvider round trips", () => {
  test("a 32-byte master key round-trips as a 2048-bit RSA-OAEP-256 ciphertext", async () => {
    const key = newKey();
    const { provider } = open(key);
    const masterKey = randomBytes(32);
    const wrappedKey = await provider.wrapKey(masterKey, context);
    assert.equal(wrappedKey.length, 256);
    assert.deepEqual(Buffer.from(await provider.unwrapKey(wrappedKey, context)), masterKey);
    assert.deepEqual(provider.describe(), { provider: "azure", keyRef: key.kid });
    await provider.checkHealth();
  });

  test("A256KW wraps with a Managed HSM oct-HSM key", async () => {
    const key = newKey({ type: "oct-HSM" });
    const { provider } = open(key, { algorithm: "A256KW" });
    const { key: masterKey, wrapped: wrappedKey } = await wrapped(provider);
    assert.equal(wrappedKey.length, 40, "RFC 3394: 32 bytes + 8-byte integrity block");
    assert.deepEqual(Buffer.from(await provider.unwrapKey(wrappedKey, context)), masterKey);
  });

  test("wrapKey refuses anything but a 32-byte master key, before calling Key Vault", async () => {
    const { provider } = open(newKey());
    for (const size of [16, 64]) {
      await assert.rejects(provider.wrapKey(randomBytes(size), context), (error: unknown) => {
        assert.ok(error instanceof KmsEnvelopeError);
        assert.equal(error.code, "INVALID_MASTER_KEY");
        assert.match(
          error.message,
          new RegExp(`the azure provider wraps 32-byte keys, not ${size}-byte ones`),
        );
        return true;
      });
    }
    assert.equal(emulator.counters.requests, 0);
  });
});

describe('AzureKeyVaultProvider with algorithm "auto": the algorithm follows the key type', () => {
  test("an oct-HSM key wraps with A256KW and an RSA key with RSA-OAEP-256", async () => {
    for (const [type, wrappedBytes] of [
      ["oct-HSM", 40],
      ["RSA-HSM", 256],
      ["RSA", 256],
    ] as const) {
      const { provider } = open(newKey({ type }), { algorithm: "auto" });
      const { key: masterKey, wrapped: wrappedKey } = await wrapped(provider);
      assert.equal(wrappedKey.length, wrappedBytes, `${type}: the algorithm its kty calls for`);
      assert.deepEqual(Buffer.from(await provider.unwrapKey(wrappedKey, context)), masterKey);
      await provider.checkHealth();
    }
  });

  test("a provider that only unwraps takes the algorithm from the wrapped key's length", async () => {
    const key = newKey({ type: "oct-HSM" });
    const { key: masterKey, wrapped: wrappedKey } = await wrapped(
      open(key, { algorithm: "A256KW" }).provider,
    );
    emulator.reset();
    const { provider } = open(key, { algorithm: "auto" });
    assert.deepEqual(Buffer.from(await provider.unwrapKey(wrappedKey, context)), masterKey);
    assert.deepEqual(Buffer.from(await provider.unwrapKey(wrappedKey, context)), masterKey);
    // Only the SDK's first-use GET, then one call per unwrapKey.
    assert.deepEqual(pick(emulator.counters), {
      unauthenticated: 1,
      get: 1,
      wrapkey: 0,
      unwrapkey: 2,
    });
  });

  test("unwrapping first under a disabled version is still the service's 'user' refusal", async () => {
    const key = newKey({ type: "oct-HSM" });
    const { wrapped: wrappedKey } = await wrapped(open(key, { algorithm: "auto" }).provider);
    emulator.disable(key);
    const { provider } = open(key, { algorithm: "auto" });
    await refused(
      provider.unwrapKey(wrappedKey, context),
      "user",
      /is disabled.*403 Forbidden: Operation unwrapKey is not allowed on a disabled key/,
    );
  });

  test("an explicit algorithm, and the default RSA-OAEP-256, still refuse a key of another type", async () => {
    const octKey = newKey({ type: "oct-HSM" });
    for (const overrides of [{ algorithm: "RSA-OAEP-256" as const }, {}]) {
      const { provider } = open(octKey, overrides);
      await refused(
        provider.checkHealth(),
        "user",
        /of type oct-HSM, which RSA-OAEP-256 cannot use: use RSA or RSA-HSM keys/,
      );
    }
  });

  test("the key type decides the algorithm; a type no algorithm can use is 'user'", () => {
    const keyRef = "https://v.vault.azure.net/keys/k/0123456789abcdef0123456789abcdef";
    for (const [keyType, algorithm] of [
      ["oct", "A256KW"],
      ["oct-HSM", "A256KW"],
      ["RSA", "RSA-OAEP-256"],
      ["RSA-HSM", "RSA-OAEP-256"],
    ] as const) {
      assert.equal(wrapAlgorithmFor(keyType, keyRef, undefined), algorithm, keyType);
    }
    for (const keyType of ["EC", "EC-HSM", undefined]) {
      assert.throws(
        () => wrapAlgorithmFor(keyType, keyRef, undefined),
        (error: unknown) => {
          assert.ok(error instanceof ProviderError, `a ProviderError, got ${inspect(error)}`);
          assert.equal(error.errorClass, "user");
          assert.match(
            error.message,
            new RegExp(
              `key ${keyRef} is of type ${keyType}, which no supported algorithm can use: use an RSA or RSA-HSM key \\(RSA-OAEP-256\\) or an oct or oct-HSM key \\(A256KW\\)`,
            ),
          );
          return true;
        },
      );
    }
  });

  test("an algorithm other than RSA-OAEP-256, A256KW or auto is refused at construction", () => {
    assert.throws(
      () => open(newKey(), { algorithm: "A128KW" as unknown as "auto" }),
      (error: unknown) => {
        assert.ok(error instanceof KmsEnvelopeError, `a KmsEnvelopeError, got ${inspect(error)}`);
        assert.equal(error.code, "INVALID_CONFIG");
        assert.match(
          error.message,
          /^azure algorithm: "A128KW" is not supported \(give RSA-OAEP-256, A256KW or auto\)$/,
        );
        return true;
      },
    );
  });
});

describe("AzureKeyVaultProvider challenge flow and call counts", () => {
  test("one unauthenticated bodyless request, then bearer requests with one token", async () => {
    const { provider, credential } = open(newKey());
    const { wrapped: wrappedKey } = await wrapped(provider);
    await provider.unwrapKey(wrappedKey, context);
    const [first, ...rest] = emulator.requests;
    assert.deepEqual(
      { authenticated: first?.authenticated, status: first?.status, bodyBytes: first?.bodyBytes },
      { authenticated: false, status: 401, bodyBytes: 0 },
    );
    assert.ok(rest.every((request) => request.authenticated && request.status === 200));
    assert.equal(emulator.counters.unauthenticated, 1);
    assert.deepEqual(credential.requests, [
      { scopes: ["https://vault.azure.net/.default"], tenantId: emulator.tenantId },
    ]);
  });

  test("wrapKey is GET + wrapkey (+ the SDK's one-time GET); unwrapKey is one unwrapkey", async () => {
    const { provider } = open(newKey());
    const { wrapped: wrappedKey } = await wrapped(provider);
    // Provider's freshness GET (after the 401 challenge), the SDK's first-use GET, the wrap.
    assert.deepEqual(pick(emulator.counters), {
      unauthenticated: 1,
      get: 2,
      wrapkey: 1,
      unwrapkey: 0,
    });
    await wrapped(provider);
    assert.deepEqual(pick(emulator.counters), {
      unauthenticated: 1,
      get: 3,
      wrapkey: 2,
      unwrapkey: 0,
    });
    await provider.unwrapKey(wrappedKey, context);
    await provider.unwrapKey(wrappedKey, context);
    assert.deepEqual(pick(emulator.counters), {
      unauthenticated: 1,
      get: 3,
      wrapkey: 2,
      unwrapkey: 2,
    });
    await provider.checkHealth();
    assert.deepEqual(pick(emulator.counters), {
      unauthenticated: 1,
      get: 4,
      wrapkey: 2,
      unwrapkey: 2,
    });
  });

  test("a provider that only unwraps makes the SDK's GET once, then one call per unwrapKey", async () => {
    const key = newKey();
    const { wrapped: wrappedKey } = await wrapped(open(key).provider);
    emulator.reset();
    const { provider } = open(key);
    await provider.unwrapKey(wrappedKey, context);
    await provider.unwrapKey(wrappedKey, context);
    assert.deepEqual(pick(emulator.counters), {
      unauthenticated: 1,
      get: 1,
      wrapkey: 0,
      unwrapkey: 2,
    });
  });
});

describe("AzureKeyVaultProvider key state", () => {
  test("a disabled version is 'user' for checkHealth, wrapKey and unwrapKey, and recovers", async () => {
    const key = newKey();
    const { provider } = open(key);
    const { key: masterKey, wrapped: wrappedKey } = await wrapped(provider);
    emulator.disable(key);
    await refused(provider.checkHealth(), "user", /is disabled: enable it .*--enabled true/);
    await refused(provider.wrapKey(randomBytes(32), context), "user", /is disabled/);
    const error = await refused(provider.unwrapKey(wrappedKey, context), "user", /is disabled/);
    assert.match(
      error.message,
      /403 Forbidden: Operation unwrapKey is not allowed on a disabled key/,
    );
    emulator.enable(key);
    await provider.checkHealth();
    assert.deepEqual(Buffer.from(await provider.unwrapKey(wrappedKey, context)), masterKey);
  });

  test("a deleted key is 'user' (404 KeyNotFound) and says how to recover it", async () => {
    const key = newKey();
    const { provider } = open(key);
    const { wrapped: wrappedKey } = await wrapped(provider);
    emulator.deleteKey(key.name);
    await refused(
      provider.unwrapKey(wrappedKey, context),
      "user",
      /no key .*az keyvault key recover.*404 KeyNotFound/,
    );
    await refused(provider.checkHealth(), "user", /404 KeyNotFound/);
  });

  test("an expired or not-yet-valid version is 'user'", async () => {
    const key = newKey();
    const { provider } = open(key);
    emulator.setValidity(key, { expiresOn: new Date(Date.now() - 60_000) });
    await refused(provider.checkHealth(), "user", /expired at .*extend it/);
    await refused(provider.wrapKey(randomBytes(32), context), "user", /expired at/);
    emulator.setValidity(key, { notBefore: new Date(Date.now() + 3_600_000) });
    await refused(provider.checkHealth(), "user", /is not valid before/);
  });

  test("unwrapKey on an expired version is refused client-side by the SDK ('user')", async () => {
    const key = newKey();
    const { wrapped: wrappedKey } = await wrapped(open(key).provider);
    emulator.setValidity(key, { expiresOn: new Date(Date.now() - 60_000) });
    // The service would still unwrap (expiry blocks only new encryption); the SDK's
    // CryptographyClient checks exp on its cached KeyBundle for every operation.
    const { provider } = open(key);
    await refused(
      provider.unwrapKey(wrappedKey, context),
      "user",
      /SDK refused unwrapKey.*expired/,
    );
  });

  test("a key without wrapKey/unwrapKey in key_ops, or of the wrong type, is 'user'", async () => {
    const { provider } = open(newKey({ keyOps: ["encrypt", "decrypt"] }));
    await refused(
      provider.checkHealth(),
      "user",
      /does not permit wrapKey and unwrapKey: allow them/,
    );
    const { provider: wrongType } = open(newKey(), { algorithm: "A256KW" });
    await refused(wrongType.checkHealth(), "user", /of type RSA, which A256KW cannot use/);
  });

  test("access denied (403) is 'user' and names the role to grant", async () => {
    const { provider } = open(newKey());
    const { wrapped: wrappedKey } = await wrapped(provider);
    emulator.denyAccess();
    await refused(
      provider.unwrapKey(wrappedKey, context),
      "user",
      /access denied .*Key Vault Crypto User role/,
    );
    await refused(provider.checkHealth(), "user", /ForbiddenByRbac|403 Forbidden/);
    emulator.allowAccess();
    await provider.unwrapKey(wrappedKey, context);
  });

  test("a token the vault rejects (401) and a credential that fails are 'user'", async () => {
    const key = newKey();
    const { provider } = open(key, { credential: new StaticCredential("not-the-token") });
    await refused(provider.checkHealth(), "user", /rejected the token .*401 Unauthorized/);
    const unavailable: TokenCredential = {
      async getToken() {
        const error = new Error("ManagedIdentityCredential: no managed identity endpoint found");
        error.name = "CredentialUnavailableError";
        throw error;
      },
    };
    const { provider: noIdentity } = open(key, { credential: unavailable });
    await refused(
      noIdentity.checkHealth(),
      "user",
      /no Microsoft Entra token .*managed or workload identity/,
    );
  });
});

describe("AzureKeyVaultProvider credentials", () => {
  test("a token the vault finds expired is 'user' and says it was not renewed", async () => {
    const query = "api-version=2019-08-01&resource=https%3A%2F%2Fvault.azure.net";
    const issued = await fetch(`${emulator.identityEndpoint}?${query}`, {
      headers: { "X-IDENTITY-HEADER": emulator.identityHeader },
    });
    const { access_token: token } = (await issued.json()) as { access_token: string };
    // A credential that hands the token out past its expiry, as one that stopped renewing.
    const { provider } = open(newKey(), { credential: new StaticCredential(token) });
    await provider.checkHealth();
    const expiredBefore = emulator.counters.expiredTokens;
    emulator.expireIdentityTokens();
    const error = await refused(
      provider.checkHealth(),
      "user",
      /rejected the token of the credential given to the azure provider for checkHealth .*: it expired and was not renewed; .*401 Unauthorized: \[TokenExpired\]/,
    );
    assert.ok(!error.message.includes(token));
    // The SDK answers the 401's challenge once more with the same token.
    assert.equal(emulator.counters.expiredTokens - expiredBefore, 2);
  });

  test("the credential named in errors follows DefaultAzureCredential's order, naming no secret", () => {
    const secret = "0A1b2C3d~secret-value";
    const sources = [
      [{}, /^the managed identity of the instance metadata service$/],
      [{ AZURE_CLIENT_ID: "c1" }, /managed identity \(user-assigned c1\) of the instance/],
      [
        { IDENTITY_ENDPOINT: "http://127.0.0.1:41741/msi/token" },
        /of http:\/\/127\.0\.0\.1:41741\/msi\/token$/,
      ],
      [
        {
          AZURE_CLIENT_ID: "c2",
          AZURE_FEDERATED_TOKEN_FILE: "/var/run/secrets/azure/tokens/azure-identity-token",
        },
        /^the workload identity c2 \(token file \/var\/run\/secrets\/azure\/tokens\/azure-identity-token\)$/,
      ],
      [
        { AZURE_CLIENT_ID: "c3", AZURE_TENANT_ID: "t", AZURE_CLIENT_SECRET: secret },
        /^the service principal c3 of AZURE_TENANT_ID$/,
      ],
    ] as const;
    for (const [environment, expected] of sources) {
      const source = azureCredentialSource(environment, false);
      assert.match(source.name, expected);
      assert.ok(!`${source.name} ${source.fix}`.includes(secret));
    }
  });
});

describe("AzureKeyVaultProvider throttling, outages and deadlines", () => {
  test("429 is retried by the SDK (Retry-After honoured) and then succeeds", async () => {
    const { provider } = open(newKey());
    const { key: masterKey, wrapped: wrappedKey } = await wrapped(provider);
    emulator.throttle(2, { operation: "unwrapkey", retryAfterSeconds: 0 });
    assert.deepEqual(Buffer.from(await provider.unwrapKey(wrappedKey, context)), masterKey);
    assert.equal(emulator.counters.unwrapkey, 3);
  });

  test("a throttled attempt retried successfully is reported once as a throttled failed attempt", async () => {
    const attempts: ProviderErrorClass[] = [];
    const { provider } = open(newKey(), {
      onAttemptFailed: (errorClass) => attempts.push(errorClass),
    });
    const { key: masterKey, wrapped: wrappedKey } = await wrapped(provider);
    assert.deepEqual(attempts, [], "the bearer challenge's 401 is no failed attempt");
    emulator.throttle(1, { operation: "unwrapkey", retryAfterSeconds: 0 });
    assert.deepEqual(Buffer.from(await provider.unwrapKey(wrappedKey, context)), masterKey);
    assert.equal(emulator.counters.unwrapkey, 2);
    assert.deepEqual(attempts, ["throttled"]);
  });

  test("an outage reports every failed attempt as other; 400 on unwrap as corrupt, 403 as user", async () => {
    const attempts: ProviderErrorClass[] = [];
    const { provider } = open(newKey(), {
      onAttemptFailed: (errorClass) => attempts.push(errorClass),
    });
    const { wrapped: wrappedKey } = await wrapped(provider);
    emulator.fail(10, 500, { operation: "unwrapkey" });
    await refused(provider.unwrapKey(wrappedKey, context), "other", /\(3 attempts\)/);
    assert.deepEqual(attempts, ["other", "other", "other"]);
    emulator.reset();
    attempts.length = 0;
    const tampered = Uint8Array.from(wrappedKey);
    tampered[100] = (tampered[100] as number) ^ 0x01;
    await refused(provider.unwrapKey(tampered, context), "corrupt", /400 BadParameter/);
    assert.deepEqual(attempts, ["corrupt"]);
    attempts.length = 0;
    emulator.denyAccess();
    await refused(provider.unwrapKey(wrappedKey, context), "user", /access denied/);
    assert.deepEqual(attempts, ["user"]);
  });

  test("persistent 429 is 'throttled' after maxRetries + 1 attempts", async () => {
    const { provider } = open(newKey());
    const { wrapped: wrappedKey } = await wrapped(provider);
    emulator.throttle(10, { operation: "unwrapkey" });
    await refused(
      provider.unwrapKey(wrappedKey, context),
      "throttled",
      /throttled unwrapKey .*\(3 attempts\)/,
    );
    assert.equal(emulator.counters.unwrapkey, 3);
  });

  test("a Retry-After longer than the deadline is 'throttled' when the deadline passes", async () => {
    const { provider } = open(newKey(), { timeoutMs: 300 });
    await provider.checkHealth();
    emulator.throttle(5, { retryAfterSeconds: 1 });
    const started = Date.now();
    await refused(
      provider.checkHealth(),
      "throttled",
      /kept throttling checkHealth with .* for 300 ms/,
    );
    assert.ok(Date.now() - started < 1_000, "the deadline interrupts the Retry-After wait");
  });

  test("500 and 503 are retried; when they persist they are 'other'", async () => {
    const { provider } = open(newKey());
    const { key: masterKey, wrapped: wrappedKey } = await wrapped(provider);
    emulator.fail(1, 503, { operation: "unwrapkey" });
    emulator.fail(1, 500, { operation: "unwrapkey" });
    assert.deepEqual(Buffer.from(await provider.unwrapKey(wrappedKey, context)), masterKey);
    emulator.fail(10, 500, { operation: "unwrapkey" });
    await refused(
      provider.unwrapKey(wrappedKey, context),
      "other",
      /\(3 attempts\).*500 InternalServerError/,
    );
    emulator.reset();
    emulator.fail(10, 503);
    await refused(provider.checkHealth(), "other", /503 ServiceUnavailable/);
  });

  test("a response slower than timeoutMs is 'other', quickly", async () => {
    const { provider } = open(newKey(), { timeoutMs: 200 });
    await provider.checkHealth();
    emulator.delay(5_000);
    const started = Date.now();
    await refused(provider.checkHealth(), "other", /did not complete checkHealth .* within 200 ms/);
    assert.ok(Date.now() - started < 1_000, "the deadline bounds the call");
    emulator.delay(0);
    await provider.checkHealth();
  });

  test("the caller's abort signal cancels a call ('other')", async () => {
    const { provider } = open(newKey());
    emulator.delay(5_000);
    await refused(
      provider.checkHealth(AbortSignal.timeout(100)),
      "other",
      /cancelled by the caller/,
    );
  });

  test("an unreachable vault and an untrusted certificate are 'other'", async () => {
    const closed = await AzureKeyVaultEmulator.start();
    const key = closed.createKey("gone");
    await closed.close();
    const { provider } = open(key);
    await refused(provider.checkHealth(), "other", /could not reach Key Vault .*ECONNREFUSED/);
    const { provider: untrusted } = open(newKey(), {
      clientOptions: { disableChallengeResourceVerification: true },
    });
    await refused(
      untrusted.checkHealth(),
      "other",
      /could not reach Key Vault .*certificate.*TLS trust/,
    );
  });
});

describe("AzureKeyVaultProvider damaged and foreign wrapped keys", () => {
  test("an unwrap result of the wrong length is 'corrupt'", async () => {
    const { provider } = open(newKey());
    const { wrapped: wrappedKey } = await wrapped(provider);
    for (const mode of ["truncate", "extend"] as const) {
      emulator.corruptNextUnwrap(mode);
      await refused(provider.unwrapKey(wrappedKey, context), "corrupt", /not a 32-byte master key/);
    }
  });

  test("a same-length corruption passes the provider: the keyring's key-id check owns it", async () => {
    const { provider } = open(newKey());
    const { key: masterKey, wrapped: wrappedKey } = await wrapped(provider);
    emulator.corruptNextUnwrap("flip");
    const unwrapped = await provider.unwrapKey(wrappedKey, context);
    assert.equal(unwrapped.length, 32);
    assert.notDeepEqual(Buffer.from(unwrapped), masterKey);
  });

  test("a key wrapped under another version of the key is refused as 'corrupt'", async () => {
    const key = newKey();
    const { wrapped: wrappedKey } = await wrapped(open(key).provider);
    const { provider: next } = open(emulator.addVersion(key.name));
    await refused(
      next.unwrapKey(wrappedKey, context),
      "corrupt",
      /wrapped under another key or key version/,
    );
  });

  test("a flipped ciphertext byte, and an empty or oversized wrapped key, are 'corrupt'", async () => {
    const { provider } = open(newKey());
    const { wrapped: wrappedKey } = await wrapped(provider);
    const tampered = Uint8Array.from(wrappedKey);
    tampered[100] = (tampered[100] as number) ^ 0x01;
    await refused(provider.unwrapKey(tampered, context), "corrupt", /400 BadParameter/);
    const before = emulator.counters.requests;
    await refused(provider.unwrapKey(new Uint8Array(0), context), "corrupt", /0 bytes/);
    await refused(provider.unwrapKey(new Uint8Array(2048), context), "corrupt", /2048 bytes/);
    assert.equal(emulator.counters.requests, before, "no call for an impossible size");
  });
});

describe("AzureKeyVaultProvider configuration", () => {
  test("a keyRef without a version is rejected at construction, saying how to pin one", () => {
    assert.throws(
      () => open(`${emulator.url}/keys/master`),
      (error: unknown) => {
        assert.ok(error instanceof KmsEnvelopeError);
        assert.equal(error.code, "INVALID_CONFIG");
        assert.match(
          error.message,
          /has no key version: the provider pins one version.*az keyvault key show/,
        );
        return true;
      },
    );
  });

  test("keyRefs that are not https versioned key URLs are rejected with the expected form", () => {
    const version = "0123456789abcdef0123456789abcdef";
    for (const [keyRef, problem] of [
      ["master", /is not a URL/],
      [`http://v.vault.azure.net/keys/k/${version}`, /must use https/],
      [`https://v.vault.azure.net/secrets/k/${version}`, /is not a key URL/],
      [`https://v.vault.azure.net/keys/k/${version}?api-version=7.4`, /query/],
      [`https://v.vault.azure.net/keys/k_k/${version}`, /invalid key name/],
      [`https://v.vault.azure.net/keys/k/${version}/wrapkey`, /is not a key URL/],
    ] as const) {
      assert.throws(
        () => parseAzureKeyRef(keyRef),
        (error: unknown) => {
          assert.ok(error instanceof KmsEnvelopeError);
          assert.match(error.message, problem);
          assert.match(
            error.message,
            /versioned key URL such as https:\/\/<vault>\.vault\.azure\.net\/keys\/<name>\/<version>/,
          );
          return true;
        },
      );
    }
    assert.deepEqual(parseAzureKeyRef(`https://V.Vault.Azure.NET:443/keys/k/${version}/`), {
      vaultUrl: "https://v.vault.azure.net",
      keyName: "k",
      version,
      keyRef: `https://v.vault.azure.net/keys/k/${version}`,
    });
  });

  test("the module entry point builds the provider the registry asks for", () => {
    const keyRef = "https://v.vault.azure.net/keys/k/0123456789abcdef0123456789abcdef";
    const provider = createProvider(keyRef, { timeoutMs: 1_000, maxAttempts: 3, environment: {} });
    providers.push(provider);
    assert.equal(moduleName, "azure");
    assert.equal(provider.name, "azure");
    assert.deepEqual(provider.describe(), { provider: "azure", keyRef });
  });

  test("close() is idempotent and later calls fail", async () => {
    const { provider } = open(newKey());
    await provider.close();
    await provider.close();
    await refused(provider.checkHealth(), "other", /closed/);
  });

  test("no error message or inspected error carries the token or key bytes", async () => {
    const key = newKey();
    const { provider } = open(key);
    const { key: masterKey, wrapped: wrappedKey } = await wrapped(provider);
    const errors: ProviderError[] = [];
    emulator.corruptNextUnwrap("extend");
    errors.push(await failure(provider.unwrapKey(wrappedKey, context)));
    emulator.throttle(10);
    errors.push(await failure(provider.unwrapKey(wrappedKey, context)));
    emulator.reset();
    emulator.fail(10, 500, { operation: "wrapkey" });
    errors.push(await failure(provider.wrapKey(masterKey, context)));
    emulator.reset();
    emulator.denyAccess();
    errors.push(await failure(provider.wrapKey(masterKey, context)));
    const secrets = [
      emulator.token,
      masterKey.toString("hex"),
      masterKey.toString("base64"),
      masterKey.toString("base64url"),
    ];
    for (const error of errors) {
      const shown = [error.message, inspect(error, { depth: 8 }), JSON.stringify(error)];
      for (const secret of secrets) {
        assert.ok(!shown.some((text) => text.includes(secret)), `leaks a secret: ${error.message}`);
      }
    }
  });
});

describe("AzureKeyVaultProvider with an identity granted only wrapKey and unwrapKey", () => {
  let least: AzureKeyVaultEmulator;
  let count = 0;
  before(async () => {
    least = await AzureKeyVaultEmulator.start({ keyPermissions: ["wrapKey", "unwrapKey"] });
  });
  after(() => least.close());
  beforeEach(() => least.reset());

  function openLeast(
    options: Parameters<AzureKeyVaultEmulator["createKey"]>[1] = {},
    overrides: Partial<AzureKeyVaultProviderOptions> = {},
  ) {
    count += 1;
    const key = least.createKey(`least-${count}`, options);
    const said: string[] = [];
    const attempts: ProviderErrorClass[] = [];
    const provider = new AzureKeyVaultProvider({
      keyRef: key.kid,
      algorithm: "auto",
      credential: new StaticCredential(least.token),
      timeoutMs: 5_000,
      maxRetries: 1,
      logger: { info: (message) => said.push(message) },
      onAttemptFailed: (errorClass) => attempts.push(errorClass),
      clientOptions: {
        tlsOptions: { ca: least.ca },
        disableChallengeResourceVerification: true,
        retryOptions: { retryDelayInMs: 5, maxRetryDelayInMs: 20 },
      },
      ...overrides,
    });
    providers.push(provider);
    return { key, provider, said, attempts };
  }

  test("wraps, unwraps and checks health; the skipped checks are said once, and no attempt failed", async () => {
    const { provider, said, attempts } = openLeast();
    const { key: masterKey, wrapped: wrappedKey } = await wrapped(provider);
    assert.equal(wrappedKey.length, 256, "RSA-OAEP-256: a vault holds no oct keys");
    for (let index = 0; index < 3; index += 1) {
      assert.deepEqual(Buffer.from(await provider.unwrapKey(wrappedKey, context)), masterKey);
      await provider.checkHealth();
      await wrapped(provider);
    }
    assert.equal(said.length, 1, said.join("\n"));
    assert.match(
      said[0] ?? "",
      /^azure: Key Vault refused to read https:\/\/127\.0\.0\.1:\d+\/keys\/least-\d+\/\w+ \(403, no keys get permission\): .* skipped .*KMS_ENVELOPE_AZURE_WRAP_ALGORITHM.*Grant get to restore the checks$/,
    );
    assert.doesNotMatch(said[0] ?? "", /\n/);
    // The provider's read and the SDK's first-use read, each refused once, then never again.
    assert.equal(least.counters.get, 2);
    assert.equal(least.counters.refusedPermissions, 2);
    assert.deepEqual(attempts, [], "a refused read is a skipped check, not a failure");
  });

  test("health without get unwraps the last wrapped key again, or makes a probe's round trip", async () => {
    const fresh = openLeast();
    await fresh.provider.checkHealth();
    assert.deepEqual(pick(least.counters), {
      unauthenticated: 1,
      get: 2,
      wrapkey: 1,
      unwrapkey: 1,
    });
    least.reset();
    const { provider } = openLeast();
    await wrapped(provider);
    const before = pick(least.counters);
    await provider.checkHealth();
    assert.deepEqual(pick(least.counters), { ...before, unwrapkey: before.unwrapkey + 1 });
  });

  test("a disabled version, a revoked unwrapKey or a revoked wrapKey still fail health ('user')", async () => {
    const { key, provider } = openLeast();
    const { wrapped: wrappedKey } = await wrapped(provider);
    least.disable(key);
    await refused(provider.checkHealth(), "user", /is disabled: enable it/);
    least.enable(key);
    await provider.checkHealth();
    least.revoke("unwrapKey");
    await refused(
      provider.checkHealth(),
      "user",
      /lacks the keys unwrapKey permission; add it \(`az keyvault set-policy --name 127 .*--key-permissions wrapKey unwrapKey`\).*403 Forbidden: The user, group or application 'appid=/,
    );
    await refused(provider.unwrapKey(wrappedKey, context), "user", /keys unwrapKey permission/);
    least.reset();
    least.revoke("wrapKey");
    const fresh = openLeast();
    await refused(fresh.provider.checkHealth(), "user", /lacks the keys wrapKey permission/);
  });

  test("keygen's check still catches a disabled version: the wrap succeeds, its unwrap does not", async () => {
    const { key, provider } = openLeast();
    least.disable(key);
    const wrappedKey = await provider.wrapKey(randomBytes(32), context);
    await refused(provider.unwrapKey(wrappedKey, context), "user", /is disabled/);
  });

  test("an oct-HSM key wraps with the algorithm given and unwraps by the wrapped key's length", async () => {
    const { key, provider } = openLeast({ type: "oct-HSM" }, { algorithm: "A256KW" });
    const { key: masterKey, wrapped: wrappedKey } = await wrapped(provider);
    assert.equal(wrappedKey.length, 40);
    const unwrapOnly = new AzureKeyVaultProvider({
      keyRef: key.kid,
      algorithm: "auto",
      credential: new StaticCredential(least.token),
      clientOptions: { tlsOptions: { ca: least.ca }, disableChallengeResourceVerification: true },
    });
    providers.push(unwrapOnly);
    assert.deepEqual(Buffer.from(await unwrapOnly.unwrapKey(wrappedKey, context)), masterKey);
  });

  test("a Managed HSM key that cannot be read needs the algorithm given; other lengths are corrupt", () => {
    const version = "0123456789abcdef0123456789abcdef";
    const hsm = parseAzureKeyRef(`https://contoso.managedhsm.azure.net/keys/k/${version}`);
    assert.throws(
      () => unreadableKeyAlgorithm(hsm, "KMS_ENVELOPE_AZURE_WRAP_ALGORITHM"),
      (error: unknown) => {
        assert.ok(error instanceof ProviderError);
        assert.equal(error.errorClass, "user");
        assert.match(
          error.message,
          /without the keys get permission: set KMS_ENVELOPE_AZURE_WRAP_ALGORITHM=A256KW for an oct-HSM key or KMS_ENVELOPE_AZURE_WRAP_ALGORITHM=RSA-OAEP-256 for an RSA-HSM key, or grant get$/,
        );
        return true;
      },
    );
    const vault = parseAzureKeyRef(`https://contoso.vault.azure.net/keys/k/${version}`);
    assert.equal(unreadableKeyAlgorithm(vault, "X"), "RSA-OAEP-256");
    assert.equal(algorithmOfWrappedKey(40, vault.keyRef), "A256KW");
    for (const length of [256, 384, 512]) {
      assert.equal(algorithmOfWrappedKey(length, vault.keyRef), "RSA-OAEP-256");
    }
    assert.throws(
      () => algorithmOfWrappedKey(41, vault.keyRef),
      (error: unknown) =>
        error instanceof ProviderError &&
        error.errorClass === "corrupt" &&
        /is 41 bytes, which neither A256KW \(40\) nor RSA-OAEP-256/.test(error.message),
    );
  });

  test("KMS_ENVELOPE_AZURE_WRAP_ALGORITHM pins the algorithm of the module entry; nonsense is refused", () => {
    const keyRef = "https://v.managedhsm.azure.net/keys/k/0123456789abcdef0123456789abcdef";
    const options = { timeoutMs: 1_000, maxAttempts: 3 };
    const pinned = createProvider(keyRef, {
      ...options,
      environment: { KMS_ENVELOPE_AZURE_WRAP_ALGORITHM: "A256KW" },
    });
    providers.push(pinned);
    assert.throws(
      () =>
        createProvider(keyRef, {
          ...options,
          environment: { KMS_ENVELOPE_AZURE_WRAP_ALGORITHM: "A128KW" },
        }),
      (error: unknown) =>
        error instanceof KmsEnvelopeError &&
        error.code === "INVALID_CONFIG" &&
        /^KMS_ENVELOPE_AZURE_WRAP_ALGORITHM: "A128KW" is not a wrap algorithm \(give RSA-OAEP-256 \(RSA keys\) or A256KW/.test(
          error.message,
        ),
    );
  });
});

function pick(counters: AzureKeyVaultEmulator["counters"]) {
  const { unauthenticated, get, wrapkey, unwrapkey } = counters;
  return { unauthenticated, get, wrapkey, unwrapkey };
}
