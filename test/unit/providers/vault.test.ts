import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, afterEach, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { loadProviderModule } from "../../../providers/registry.js";
import { ProviderError, type ProviderErrorClass } from "../../../providers/types.js";
import {
  VaultTransitProvider,
  type VaultTransitProviderOptions,
} from "../../../providers/vault.js";
import { parseVaultKeyRef } from "../../../providers/vault-key-ref.js";
import { VaultTransitEmulator } from "../../emulators/vault-transit/server.js";
import { hasCode } from "../../support/error-assertions.js";

const CONTEXT = { keyId: "vault:bWFzdGVyLWtleS1p" };
const POLICY = { "transit/encrypt/kek": ["update"], "transit/decrypt/kek": ["update"] } as const;

let vault: VaultTransitEmulator;
let directory: string;
const open: VaultTransitProvider[] = [];

before(async () => {
  vault = await VaultTransitEmulator.start();
  vault.createKey("kek");
  vault.writePolicy("kms", POLICY);
  directory = await mkdtemp(join(tmpdir(), "vault-provider-test-"));
});
after(async () => {
  await vault.close();
  await rm(directory, { recursive: true, force: true });
});
afterEach(async () => {
  vault.reset();
  vault.writePolicy("kms", POLICY);
  await Promise.all(open.splice(0).map((provider) => provider.close()));
});

/** A provider for `kek` with a fresh token of the `kms` policy, unless told otherwise. */
function provider(
  options: Partial<VaultTransitProviderOptions> & { env?: NodeJS.ProcessEnv } = {},
): VaultTransitProvider {
  const { env, ...rest } = options;
  const created = new VaultTransitProvider({
    keyRef: vault.keyRef("kek"),
    environment: env ?? {
      VAULT_CACERT: vault.caFile,
      VAULT_TOKEN: vault.createToken({ policies: ["kms"] }),
    },
    timeoutMs: 3000,
    maxAttempts: 1,
    ...rest,
  });
  open.push(created);
  return created;
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

async function roundTrip(subject: VaultTransitProvider): Promise<void> {
  const key = randomBytes(32);
  const unwrapped = await subject.unwrapKey(await subject.wrapKey(key, CONTEXT), CONTEXT);
  assert.deepEqual(Buffer.from(unwrapped), key);
}

async function file(name: string, content: string): Promise<string> {
  const path = join(directory, name);
  await writeFile(path, content, { mode: 0o600 });
  return path;
}

const statuses = (operation: string) =>
  vault.requests.filter((request) => request.operation === operation).map((r) => r.status);

describe("vault key reference", () => {
  test("a Transit key URL names the address, mount, key and namespace; the canonical form is recorded", () => {
    assert.deepEqual(
      parseVaultKeyRef("https://vault.example.com:8200/v1/transit/keys/kek?namespace=/team-a/kms/"),
      {
        address: "https://vault.example.com:8200",
        mount: "transit",
        keyName: "kek",
        namespace: "team-a/kms",
        keyRef: "https://vault.example.com:8200/v1/transit/keys/kek?namespace=team-a/kms",
      },
    );
    const nested = parseVaultKeyRef("https://gw.example.com/vault/v1/kms/transit/keys/k8s.master");
    assert.equal(nested.address, "https://gw.example.com/vault");
    assert.equal(nested.mount, "kms/transit");
    assert.equal(nested.keyName, "k8s.master");
    assert.equal(parseVaultKeyRef("http://127.0.0.1:8100/v1/transit/keys/kek").namespace, "");
    assert.equal(parseVaultKeyRef("http://localhost:8100/v1/transit/keys/kek").mount, "transit");
  });

  for (const [keyRef, problem] of [
    ["transit/kek", /is not a URL/],
    [
      "http://vault.example.com:8200/v1/transit/keys/kek",
      /plain http to a host that is not loopback/,
    ],
    ["https://vault.example.com/v1/transit/kek", /is not a Transit key URL/],
    ["https://vault.example.com/transit/keys/kek", /is not a Transit key URL/],
    ["https://vault.example.com/v1/keys/kek", /is not a Transit key URL/],
    ["https://user:pw@vault.example.com/v1/transit/keys/kek", /credentials/],
    ["https://vault.example.com/v1/transit/keys/kek?version=2", /other than namespace \(version\)/],
    ["https://vault.example.com/v1/transit/keys/-kek", /invalid key name/],
    ["https://vault.example.com/v1/transit/keys/kek?namespace=a//b", /invalid namespace/],
  ] as const) {
    test(`${keyRef} is refused, saying what a key URL looks like`, () => {
      assert.throws(
        () => parseVaultKeyRef(keyRef),
        hasCode(
          "INVALID_CONFIG",
          new RegExp(`${problem.source}.*give the key's URL, such as https://`),
        ),
      );
    });
  }
});

describe("vault provider settings", () => {
  const keyRef = "https://vault.example.com/v1/transit/keys/kek";
  const settle = (environment: NodeJS.ProcessEnv) => () =>
    new VaultTransitProvider({ keyRef, environment });

  test("token auth needs VAULT_TOKEN or VAULT_TOKEN_FILE, not both", () => {
    assert.throws(
      settle({}),
      hasCode("INVALID_CONFIG", /^VAULT_TOKEN_FILE: is not set \(nor VAULT_TOKEN\)/),
    );
    assert.throws(
      settle({ VAULT_TOKEN: "x", VAULT_TOKEN_FILE: "/run/token" }),
      hasCode("INVALID_CONFIG", /^VAULT_TOKEN: and VAULT_TOKEN_FILE are both set/),
    );
  });

  test("a credential missing for the chosen method names the variable of another method that is set", () => {
    assert.throws(
      settle({ VAULT_ROLE_ID: "r" }),
      hasCode(
        "INVALID_CONFIG",
        "VAULT_TOKEN_FILE: is not set (nor VAULT_TOKEN) (give the token (a Vault Agent sink file is best) in VAULT_TOKEN_FILE, or in VAULT_TOKEN; VAULT_ROLE_ID is set: for approle auth, set VAULT_AUTH_METHOD=approle)",
      ),
    );
    // A token in the environment does not stand in the way of another method.
    assert.doesNotThrow(
      settle({ VAULT_TOKEN: "x", VAULT_AUTH_METHOD: "approle", VAULT_ROLE_ID: "r" }),
    );
    assert.throws(
      settle({ VAULT_AUTH_METHOD: "ldap" }),
      hasCode("INVALID_CONFIG", /^VAULT_AUTH_METHOD: /),
    );
    assert.throws(
      settle({ VAULT_AUTH_METHOD: "kubernetes" }),
      hasCode("INVALID_CONFIG", /^VAULT_KUBERNETES_ROLE: is not set/),
    );
  });

  test("an unreadable or non-PEM VAULT_CACERT is refused at creation", async () => {
    assert.throws(
      settle({ VAULT_TOKEN: "x", VAULT_CACERT: join(directory, "missing.pem") }),
      hasCode("INVALID_CONFIG", /^VAULT_CACERT: cannot read .*missing\.pem/),
    );
    const notPem = await file("not.pem", "hello");
    assert.throws(
      settle({ VAULT_TOKEN: "x", VAULT_CACERT: notPem }),
      hasCode("INVALID_CONFIG", /^VAULT_CACERT: .*holds no PEM certificate/),
    );
  });

  test("an endpoint override must be https, or http to loopback", () => {
    assert.throws(
      () =>
        new VaultTransitProvider({
          keyRef,
          environment: { VAULT_TOKEN: "x" },
          endpoint: "http://vault.internal:8200",
        }),
      hasCode("INVALID_CONFIG", /^vault endpoint: .*plain http only to a loopback address/),
    );
  });
});

describe("vault provider: wrapping with Transit", () => {
  test("a 32-byte key round-trips as a vault:v1: ciphertext bound to its key id", async () => {
    const subject = provider();
    const key = randomBytes(32);
    const wrapped = await subject.wrapKey(key, CONTEXT);
    const ciphertext = Buffer.from(wrapped).toString("utf8");
    assert.match(ciphertext, /^vault:v1:[A-Za-z0-9+/]+={0,2}$/);
    assert.deepEqual(Buffer.from(await subject.unwrapKey(wrapped, CONTEXT)), key);
    // The binding is documented, so an operator can decrypt by hand with the Vault CLI.
    const binding = Buffer.from(`kms-envelope/v1/master-key:${CONTEXT.keyId}`).toString("base64");
    const direct = vault
      .key("kek")
      ?.decrypt({ ciphertext, associated_data: binding, context: binding });
    assert.equal(direct?.plaintext, key.toString("base64"));
    const moved = await failure(subject.unwrapKey(wrapped, { keyId: "vault:c29tZW9uZS1lbHNl" }));
    assert.equal(moved.errorClass, "corrupt");
    assert.match(
      moved.message,
      /could not decrypt the wrapped key .*cipher: message authentication failed/,
    );
  });

  test("keys of other sizes are refused before any call", async () => {
    const subject = provider();
    await assert.rejects(subject.wrapKey(randomBytes(16), CONTEXT), hasCode("INVALID_MASTER_KEY"));
    assert.equal(vault.counters.encrypt, 0);
  });

  test("damage Vault's lenient base64 would let through is refused locally as corrupt", async () => {
    const subject = provider();
    const text = Buffer.from(await subject.wrapKey(randomBytes(32), CONTEXT)).toString("utf8");
    const decrypts = vault.counters.decrypt;
    // 60 bytes of nonce, key and tag end on a full base64 quantum; pad so the last character
    // carries spare bits, as a longer ciphertext would.
    for (const damaged of [`${text}==`, `w${text.slice(1)}`, `${text}\u0000`, "vault:v1:"]) {
      const refused = await failure(subject.unwrapKey(Buffer.from(damaged), CONTEXT));
      assert.equal(refused.errorClass, "corrupt");
      assert.match(refused.message, /is not a Vault Transit ciphertext \(vault:v<N>:<base64>\)/);
    }
    assert.equal(vault.counters.decrypt, decrypts);
  });

  test("after a rotation new wraps use v2 and v1 still unwraps; min_decryption_version above it is the operator's to lower", async () => {
    const subject = provider();
    vault.createKey("versions");
    vault.writePolicy("kms", { "transit/*": ["update"] });
    const versioned = provider({ keyRef: vault.keyRef("versions") });
    const old = randomBytes(32);
    const first = await versioned.wrapKey(old, CONTEXT);
    vault.key("versions")?.rotate();
    const second = await versioned.wrapKey(randomBytes(32), CONTEXT);
    assert.match(Buffer.from(second).toString(), /^vault:v2:/);
    assert.deepEqual(Buffer.from(await versioned.unwrapKey(first, CONTEXT)), old);
    vault.key("versions")?.configure({ minDecryptionVersion: 2 });
    const tooOld = await failure(versioned.unwrapKey(first, CONTEXT));
    assert.equal(tooOld.errorClass, "user");
    assert.match(
      tooOld.message,
      /made with version 1 of Transit key versions, which is below its min_decryption_version: lower it \(vault write transit\/keys\/versions\/config min_decryption_version=1\)/,
    );
    await roundTrip(subject);
  });

  test("a derived key works (the binding is also the derivation context); a non-AEAD key is named as the problem", async () => {
    vault.createKey("derived", { derived: true });
    vault.createKey("rsa", { type: "rsa-2048" });
    vault.writePolicy("kms", { "transit/*": ["update"] });
    await roundTrip(provider({ keyRef: vault.keyRef("derived") }));
    const rsa = await failure(
      provider({ keyRef: vault.keyRef("rsa") }).wrapKey(randomBytes(32), CONTEXT),
    );
    assert.equal(rsa.errorClass, "user");
    assert.match(rsa.message, /cannot bind associated data .*use an AEAD key type \(aes256-gcm96/);
  });

  test("a missing key is named with the command that creates it, on decrypt (400) and on encrypt (403 without create)", async () => {
    vault.writePolicy("kms", {
      ...POLICY,
      "transit/encrypt/gone": ["update"],
      "transit/decrypt/gone": ["update"],
    });
    const subject = provider({ keyRef: vault.keyRef("gone") });
    const encrypt = await failure(subject.wrapKey(randomBytes(32), CONTEXT));
    assert.equal(encrypt.errorClass, "user");
    assert.match(
      encrypt.message,
      /^Transit key gone does not exist in mount transit \(Vault asks create, not update, .*vault write -f transit\/keys\/gone/,
    );
    const wrapped = await provider().wrapKey(randomBytes(32), CONTEXT);
    const decrypt = await failure(subject.unwrapKey(wrapped, CONTEXT));
    assert.equal(decrypt.errorClass, "user");
    assert.match(
      decrypt.message,
      /^Transit key gone does not exist .*\(HTTP 400: encryption key not found\)$/,
    );
  });

  test("a token without the Transit paths is told the policy lines to add, never the token", async () => {
    const token = vault.createToken({ policies: [] });
    const subject = provider({ env: { VAULT_CACERT: vault.caFile, VAULT_TOKEN: token } });
    const denied = await failure(subject.checkHealth());
    assert.equal(denied.errorClass, "user");
    assert.equal(
      denied.message,
      'the Vault token lacks the update capability on transit/encrypt/kek (it has none): add path "transit/encrypt/kek" { capabilities = ["update"] } and path "transit/decrypt/kek" { capabilities = ["update"] } to its policy',
    );
    vault.writePolicy("deny", { "transit/decrypt/kek": ["deny"] });
    const partial = provider({
      env: {
        VAULT_CACERT: vault.caFile,
        VAULT_TOKEN: vault.createToken({ policies: ["kms", "deny"] }),
      },
    });
    const explicit = await failure(partial.checkHealth());
    assert.match(
      explicit.message,
      /^a policy of the Vault token denies transit\/decrypt\/kek explicitly/,
    );
    for (const error of [denied, explicit]) {
      assert.doesNotMatch(`${error.message}${error.stack}`, new RegExp(token.replace(".", "\\.")));
    }
  });

  test("a sealed Vault is an outage (other), rate limiting is throttled, and 5xx is retried", async () => {
    const seen: ProviderErrorClass[] = [];
    const subject = provider({
      maxAttempts: 2,
      onAttemptFailed: (errorClass) => seen.push(errorClass),
    });
    vault.seal();
    const sealed = await failure(subject.checkHealth());
    assert.equal(sealed.errorClass, "other");
    assert.match(sealed.message, /is sealed.*: unseal it \(vault operator unseal\)/);
    vault.unseal();
    vault.throttle(10, ["encrypt"], 0);
    const throttled = await failure(subject.wrapKey(randomBytes(32), CONTEXT));
    assert.equal(throttled.errorClass, "throttled");
    assert.match(throttled.message, /rate-limited .*\(HTTP 429: rate limit quota exceeded\)/);
    vault.reset();
    seen.length = 0;
    vault.fail(1, 500, ["decrypt"]);
    const wrapped = await subject.wrapKey(randomBytes(32), CONTEXT);
    await subject.unwrapKey(wrapped, CONTEXT);
    assert.deepEqual(seen, ["other"]);
    assert.deepEqual(statuses("decrypt"), [500, 200]);
  });

  test("a stalled Vault fails within the deadline as other; a caller's abort ends the call", async () => {
    const subject = provider({ timeoutMs: 500 });
    const wrapped = await subject.wrapKey(randomBytes(32), CONTEXT);
    vault.delay(3000);
    const started = performance.now();
    const stalled = await failure(subject.unwrapKey(wrapped, CONTEXT));
    assert.ok(performance.now() - started < 1500);
    assert.equal(stalled.errorClass, "other");
    assert.match(stalled.message, /did not complete within 500 ms \(1 attempt\)/);
    const cancelled = await failure(
      provider({ timeoutMs: 5000 }).unwrapKey(wrapped, CONTEXT, AbortSignal.timeout(100)),
    );
    assert.match(cancelled.message, /was cancelled by the caller$/);
  });

  test("the registry builds it from a name, the key reference and the environment; close is final", async () => {
    const module = await loadProviderModule("vault");
    assert.equal(module.name, "vault");
    const created = await module.createProvider(vault.keyRef("kek"), {
      timeoutMs: 3000,
      maxAttempts: 1,
      environment: {
        VAULT_CACERT: vault.caFile,
        VAULT_TOKEN: vault.createToken({ policies: ["kms"] }),
      },
    });
    assert.deepEqual(created.describe(), { provider: "vault", keyRef: vault.keyRef("kek") });
    await created.checkHealth();
    await created.close();
    await created.close();
    await assert.rejects(created.checkHealth(), /is closed/);
  });

  test("--endpoint reaches the same key another way (a local Vault Agent) and the key reference stays", async () => {
    const keyRef = "https://vault.example.invalid:8200/v1/transit/keys/kek";
    const subject = provider({ keyRef, endpoint: vault.url });
    await roundTrip(subject);
    assert.equal(subject.describe().keyRef, keyRef);
  });
});

describe("vault provider: TLS and namespaces", () => {
  test("without the CA file the certificate is untrusted (user), naming VAULT_CACERT; with it, calls work", async () => {
    const token = vault.createToken({ policies: ["kms"] });
    const untrusted = await failure(provider({ env: { VAULT_TOKEN: token } }).checkHealth());
    assert.equal(untrusted.errorClass, "user");
    assert.match(
      untrusted.message,
      /TLS certificate of Vault at https:\/\/127\.0\.0\.1:\d+ is not trusted .*set VAULT_CACERT/,
    );
    await provider({ env: { VAULT_TOKEN: token, VAULT_CACERT: vault.caFile } }).checkHealth();
  });

  test("VAULT_TLS_SERVER_NAME is the name the certificate is checked against", async () => {
    const token = vault.createToken({ policies: ["kms"] });
    const env = { VAULT_TOKEN: token, VAULT_CACERT: vault.caFile };
    const wrong = await failure(
      provider({ env: { ...env, VAULT_TLS_SERVER_NAME: "vault.other.example" } }).checkHealth(),
    );
    assert.equal(wrong.errorClass, "user");
    assert.match(
      wrong.message,
      /ERR_TLS_CERT_ALTNAME_INVALID.*or VAULT_TLS_SERVER_NAME to a name the certificate carries/,
    );
    await provider({ env: { ...env, VAULT_TLS_SERVER_NAME: "localhost" } }).checkHealth();
  });

  test("a key in a namespace is reached with X-Vault-Namespace, by a token of a parent namespace", async () => {
    vault.createNamespace("team-a/kms");
    vault.enableTransit("transit", "team-a/kms");
    vault.createKey("kek", { namespace: "team-a/kms" });
    vault.writePolicy(
      "child",
      {
        "kms/transit/encrypt/kek": ["update"],
        "kms/transit/decrypt/kek": ["update"],
      },
      "team-a",
    );
    const token = vault.createToken({ policies: ["child"], namespace: "team-a" });
    const subject = provider({
      keyRef: vault.keyRef("kek", { namespace: "team-a/kms" }),
      env: {
        VAULT_CACERT: vault.caFile,
        VAULT_TOKEN: token,
        VAULT_AUTH_NAMESPACE: "team-a",
      },
    });
    await roundTrip(subject);
    const transit = vault.requests.filter(
      (r) => r.operation === "encrypt" || r.operation === "decrypt",
    );
    assert.deepEqual(new Set(transit.map((r) => r.namespace)), new Set(["team-a/kms"]));
    assert.deepEqual(
      vault.requests.filter((r) => r.operation === "lookup").map((r) => r.namespace),
      ["team-a"],
    );
    // The same key name in the root namespace is another key: what one wrapped, the other refuses.
    const wrapped = await subject.wrapKey(randomBytes(32), CONTEXT);
    assert.equal((await failure(provider().unwrapKey(wrapped, CONTEXT))).errorClass, "corrupt");
  });
});

describe("vault provider: tokens renewed, replaced and expired", () => {
  test("a renewable token is renewed before it expires, without a restart", async () => {
    const token = vault.createToken({ policies: ["kms"], ttlSeconds: 3 });
    const subject = provider({ env: { VAULT_CACERT: vault.caFile, VAULT_TOKEN: token } });
    await subject.checkHealth();
    const expiry = Date.now() + 3000;
    await sleep(4500);
    await subject.checkHealth();
    const renewals = vault.requests.filter((r) => r.operation === "renew");
    assert.ok(renewals.length >= 1, "renew-self was called");
    assert.ok(
      (renewals[0]?.at ?? Infinity) < expiry,
      "the first renewal came before the TTL ran out",
    );
    assert.ok(renewals.every((r) => r.status === 200));
    assert.equal(vault.counters.login, 0);
    assert.ok((vault.tokenTtl(token) ?? 0) > 0, "the token is alive");
  });

  test("AppRole logs in again before the max TTL ends a token no renewal can extend", async () => {
    const approle = vault.enableAppRole();
    const { roleId, secretId } = approle.createRole("kms", {
      policies: ["kms"],
      tokenTtlSeconds: 3,
      tokenMaxTtlSeconds: 4,
    });
    const subject = provider({
      env: {
        VAULT_CACERT: vault.caFile,
        VAULT_AUTH_METHOD: "approle",
        VAULT_ROLE_ID: roleId,
        VAULT_SECRET_ID_FILE: await file("secret-id", `${secretId}\n`),
      },
    });
    await subject.checkHealth();
    const firstExpiry = Date.now() + 4000;
    await sleep(5500);
    await subject.checkHealth();
    const logins = vault.requests.filter((r) => r.operation === "login");
    assert.ok(logins.length >= 2, `logged in ${logins.length} times`);
    assert.ok(
      (logins[1]?.at ?? Infinity) < firstExpiry,
      "the second login came before the first token expired",
    );
    assert.ok(
      vault.requests.some((r) => r.operation === "renew"),
      "the token was renewed first",
    );
    assert.ok(
      vault.requests.every((r) => r.status !== 403),
      "no call met an expired token",
    );
  });

  for (const flavor of ["vault", "openbao"] as const) {
    test(`a revoked AppRole token is replaced by one new login and the call succeeds (${flavor} 403s)`, async () => {
      const emulator = await VaultTransitEmulator.start({ flavor });
      try {
        emulator.createKey("kek");
        emulator.writePolicy("kms", POLICY);
        const { roleId, secretId } = emulator
          .enableAppRole()
          .createRole("kms", { policies: ["kms"], tokenTtlSeconds: 600 });
        const subject = provider({
          keyRef: emulator.keyRef("kek"),
          env: {
            VAULT_CACERT: emulator.caFile,
            VAULT_AUTH_METHOD: "approle",
            VAULT_ROLE_ID: roleId,
            VAULT_SECRET_ID: secretId,
          },
        });
        const wrapped = await subject.wrapKey(randomBytes(32), CONTEXT);
        emulator.revokeLogins("auth/approle/login");
        await subject.unwrapKey(wrapped, CONTEXT);
        assert.equal(emulator.counters.login, 2);
        assert.deepEqual(
          emulator.requests.filter((r) => r.operation === "decrypt").map((r) => r.status),
          [403, 200],
        );
        // OpenBao's bare "permission denied" is told apart from a policy problem by lookup-self.
        assert.equal(emulator.counters.lookup, flavor === "openbao" ? 1 : 0);
      } finally {
        await emulator.close();
      }
    });
  }

  test("Kubernetes auth logs in with the service-account token file, re-read at each login", async () => {
    const kubernetes = vault.enableKubernetes();
    kubernetes.createRole("kms", {
      policies: ["kms"],
      serviceAccount: "kms-envelope",
      serviceAccountNamespace: "kube-system",
      tokenTtlSeconds: 600,
    });
    const jwtFile = await file(
      "sa-token",
      kubernetes.serviceAccountToken("kms-envelope", "kube-system"),
    );
    const subject = provider({
      env: {
        VAULT_CACERT: vault.caFile,
        VAULT_AUTH_METHOD: "kubernetes",
        VAULT_KUBERNETES_ROLE: "kms",
        VAULT_KUBERNETES_JWT_FILE: jwtFile,
      },
    });
    await roundTrip(subject);
    // The kubelet rotates projected tokens: the next login must read the new one.
    await writeFile(jwtFile, kubernetes.serviceAccountToken("kms-envelope", "kube-system"));
    vault.revokeLogins("auth/kubernetes/login");
    await roundTrip(subject);
    assert.equal(vault.counters.login, 2);
    await writeFile(jwtFile, kubernetes.serviceAccountToken("someone-else", "kube-system"));
    vault.revokeLogins("auth/kubernetes/login");
    const refused = await failure(subject.checkHealth());
    assert.equal(refused.errorClass, "user");
    assert.match(
      refused.message,
      /^Vault refused the Kubernetes login at auth\/kubernetes as role kms \(HTTP 403: service account name not authorized\): check that the role binds this pod's service account/,
    );
  });

  test("AppRole and Kubernetes login failures say what to check", async () => {
    vault.enableAppRole().createRole("kms", { policies: ["kms"] });
    const approle = await failure(
      provider({
        env: {
          VAULT_CACERT: vault.caFile,
          VAULT_AUTH_METHOD: "approle",
          VAULT_ROLE_ID: "not-a-role",
          VAULT_SECRET_ID: "nope",
        },
      }).checkHealth(),
    );
    assert.equal(approle.errorClass, "user");
    assert.match(
      approle.message,
      /^Vault refused the AppRole login at auth\/approle \(HTTP 400: invalid role or secret ID\): check the role_id and secret_id/,
    );
    const missing = await failure(
      provider({
        env: {
          VAULT_CACERT: vault.caFile,
          VAULT_AUTH_METHOD: "kubernetes",
          VAULT_KUBERNETES_ROLE: "kms",
          VAULT_KUBERNETES_JWT_FILE: join(directory, "no-such-token"),
        },
      }).checkHealth(),
    );
    assert.equal(missing.errorClass, "user");
    assert.match(
      missing.message,
      /^cannot read the service-account token from .*no-such-token \(ENOENT\)/,
    );
  });

  test("a token file is re-read when its token is refused: a new token there works without a restart", async () => {
    const tokenFile = await file("token", vault.createToken({ policies: ["kms"] }));
    const subject = provider({
      env: { VAULT_CACERT: vault.caFile, VAULT_TOKEN_FILE: tokenFile },
    });
    await subject.checkHealth();
    vault.revokeToken(await readFile(tokenFile, "utf8"));
    const revoked = await failure(subject.checkHealth());
    assert.equal(revoked.errorClass, "user");
    assert.match(
      revoked.message,
      /token \(from .*token\) was refused by Vault .*write a valid token to .*token \(it is re-read\)/,
    );
    await writeFile(tokenFile, vault.createToken({ policies: ["kms"] }));
    await subject.checkHealth();
  });

  test("a token that expires with no way to get another turns health failing, saying what to do", async () => {
    const token = vault.createToken({ policies: ["kms"], ttlSeconds: 1, renewable: false });
    const subject = provider({ env: { VAULT_CACERT: vault.caFile, VAULT_TOKEN: token } });
    await subject.checkHealth();
    await sleep(1200);
    const before = vault.counters.requests;
    const expired = await failure(subject.checkHealth());
    assert.equal(expired.errorClass, "user");
    assert.match(
      expired.message,
      /^the Vault token \(from VAULT_TOKEN\) expired at \d{4}-\d\d-\d\dT[\d:.]+Z: give the daemon a token it can renew, or one in VAULT_TOKEN_FILE .*or use AppRole or Kubernetes auth/,
    );
    assert.equal(vault.counters.requests, before, "an expired token is not sent");
    assert.doesNotMatch(
      `${expired.message}${expired.stack}`,
      new RegExp(token.replace(".", "\\.")),
    );
  });

  test("a revoked token from the environment fails as user and stays failed until replaced", async () => {
    const token = vault.createToken({ policies: ["kms"] });
    const subject = provider({ env: { VAULT_CACERT: vault.caFile, VAULT_TOKEN: token } });
    await subject.checkHealth();
    vault.revokeToken(token);
    for (let index = 0; index < 2; index += 1) {
      const refused = await failure(subject.checkHealth());
      assert.equal(refused.errorClass, "user");
      assert.match(
        refused.message,
        /^the Vault token \(from VAULT_TOKEN\) was refused by Vault \(revoked, expired or mistyped\)/,
      );
    }
  });
});
