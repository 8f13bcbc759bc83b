import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import { VaultTransitEmulator } from "../../emulators/vault-transit/server.js";

// The emulator over plain HTTP (global fetch), held to what Vault's API documentation says:
// paths, status codes, `{"errors": [...]}` bodies, key versions and token lifetimes. The
// provider's own tests run it over HTTPS.

let vault: VaultTransitEmulator;
let root: string;

before(async () => {
  vault = await VaultTransitEmulator.start({ plainHttp: true });
  root = vault.createToken({ policies: ["root"], ttlSeconds: 0 });
});
after(async () => {
  await vault.close();
});
afterEach(() => {
  vault.reset();
});

interface Answer {
  status: number;
  body: {
    data?: Record<string, unknown> | null;
    auth?: Record<string, unknown> | null;
    errors?: string[];
    warnings?: string[] | null;
  } & Record<string, unknown>;
  headers: Headers;
}

async function call(
  method: "GET" | "POST",
  path: string,
  options: { token?: string | undefined; namespace?: string; body?: unknown } = {},
): Promise<Answer> {
  const headers: Record<string, string> = {};
  const token = "token" in options ? options.token : root;
  if (token !== undefined) headers["X-Vault-Token"] = token;
  if (options.namespace !== undefined) headers["X-Vault-Namespace"] = options.namespace;
  const response = await fetch(`${vault.url}/v1/${path}`, {
    method,
    headers,
    ...(options.body !== undefined && { body: JSON.stringify(options.body) }),
  });
  const text = await response.text();
  return {
    status: response.status,
    body: text === "" ? {} : JSON.parse(text),
    headers: response.headers,
  };
}

const b64 = (text: string) => Buffer.from(text).toString("base64");

async function encrypt(name: string, body: Record<string, unknown>, token?: string) {
  return call("POST", `transit/encrypt/${name}`, { body, ...(token !== undefined && { token }) });
}

describe("vault emulator: Transit keys and versions", () => {
  test("encrypt answers vault:v1: ciphertext and key_version; decrypt gives the plaintext back", async () => {
    vault.createKey("basic");
    const sealed = await encrypt("basic", { plaintext: b64("hello") });
    assert.equal(sealed.status, 200);
    assert.match(String(sealed.body.data?.ciphertext), /^vault:v1:[A-Za-z0-9+/]+=*$/);
    assert.equal(sealed.body.data?.key_version, 1);
    const opened = await call("POST", "transit/decrypt/basic", {
      body: { ciphertext: sealed.body.data?.ciphertext },
    });
    assert.deepEqual([opened.status, opened.body.data?.plaintext], [200, b64("hello")]);
  });

  test("rotate makes v2 the encrypting version; v1 decrypts until min_decryption_version passes it", async () => {
    vault.createKey("rotating");
    const v1 = (await encrypt("rotating", { plaintext: b64("one") })).body.data?.ciphertext;
    assert.equal((await call("POST", "transit/keys/rotating/rotate")).status, 200);
    const v2 = await encrypt("rotating", { plaintext: b64("two") });
    assert.match(String(v2.body.data?.ciphertext), /^vault:v2:/);
    assert.equal(v2.body.data?.key_version, 2);
    const decrypt = () => call("POST", "transit/decrypt/rotating", { body: { ciphertext: v1 } });
    assert.equal((await decrypt()).status, 200);
    await call("POST", "transit/keys/rotating/config", { body: { min_decryption_version: 2 } });
    const tooOld = await decrypt();
    assert.deepEqual(
      [tooOld.status, tooOld.body.errors],
      [400, ["ciphertext or signature version is disallowed by policy (too old)"]],
    );
    const read = await call("GET", "transit/keys/rotating");
    assert.equal(read.body.data?.latest_version, 2);
    assert.equal(read.body.data?.min_decryption_version, 2);
    assert.deepEqual(Object.keys(read.body.data?.keys as object), ["2"]);
    assert.equal(read.body.data?.type, "aes256-gcm96");
  });

  test("Transit's refusals carry its status and error strings", async () => {
    vault.createKey("refusals");
    vault.createKey("rsa", { type: "rsa-2048" });
    const good = String(
      (await encrypt("refusals", { plaintext: b64("x"), associated_data: b64("aad") })).body.data
        ?.ciphertext,
    );
    const cases: [string, Record<string, unknown>, number, string][] = [
      ["decrypt/missing", { ciphertext: good }, 400, "encryption key not found"],
      ["decrypt/refusals", { ciphertext: "v1:abc" }, 400, "invalid ciphertext: no prefix"],
      [
        "decrypt/refusals",
        { ciphertext: "vault:v9:AAAA" },
        400,
        "invalid ciphertext: version is too new",
      ],
      [
        "decrypt/refusals",
        { ciphertext: "vault:v1:A" },
        400,
        "invalid ciphertext: could not decode base64",
      ],
      ["decrypt/refusals", { ciphertext: good }, 400, "cipher: message authentication failed"],
      [
        "decrypt/refusals",
        { ciphertext: good, associated_data: b64("other") },
        400,
        "cipher: message authentication failed",
      ],
      ["decrypt/refusals", {}, 400, "missing ciphertext to decrypt"],
      ["encrypt/refusals", {}, 400, "missing plaintext to encrypt"],
      [
        "encrypt/rsa",
        { plaintext: b64("x"), associated_data: b64("a") },
        400,
        "'[0].associated_data' provided for non-AEAD cipher suite rsa-2048",
      ],
      [
        "encrypt/refusals",
        { plaintext: b64("x"), key_version: 5 },
        400,
        "requested version for encryption is higher than the latest key version",
      ],
    ];
    for (const [path, body, status, message] of cases) {
      const answer = await call("POST", `transit/${path}`, { body });
      assert.deepEqual([answer.status, answer.body.errors], [status, [message]], path);
    }
  });

  test("a derived key needs the context it encrypted with; AAD on AEAD keys is authenticated", async () => {
    vault.createKey("derived", { derived: true });
    const missing = await encrypt("derived", { plaintext: b64("x") });
    assert.equal(missing.status, 400);
    assert.match(String(missing.body.errors?.[0]), /^missing 'context' for key derivation/);
    const sealed = await encrypt("derived", { plaintext: b64("x"), context: b64("a") });
    const other = await call("POST", "transit/decrypt/derived", {
      body: { ciphertext: sealed.body.data?.ciphertext, context: b64("b") },
    });
    assert.deepEqual(other.body.errors, ["cipher: message authentication failed"]);
  });

  test("base64 is decoded as Go does: spare trailing bits are not checked", async () => {
    vault.createKey("lenient");
    // 1 byte of plaintext: 12 + 1 + 16 = 29 bytes, so the last character before "=" has spare bits.
    const ciphertext = String(
      (await encrypt("lenient", { plaintext: b64("x") })).body.data?.ciphertext,
    );
    const last = ciphertext.length - 2;
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const index = alphabet.indexOf(ciphertext.charAt(last));
    const twin = `${ciphertext.slice(0, last)}${alphabet.charAt(index ^ 1)}=`;
    assert.notEqual(twin, ciphertext);
    const opened = await call("POST", "transit/decrypt/lenient", { body: { ciphertext: twin } });
    assert.deepEqual([opened.status, opened.body.data?.plaintext], [200, b64("x")]);
  });

  test("encrypt with a missing key needs create (403 with update alone); with create it upserts a key", async () => {
    vault.writePolicy("update-only", { "transit/encrypt/fresh": ["update"] });
    vault.writePolicy("create", { "transit/encrypt/fresh": ["create", "update"] });
    const updateOnly = vault.createToken({ policies: ["update-only"] });
    const denied = await encrypt("fresh", { plaintext: b64("x") }, updateOnly);
    assert.deepEqual(
      [denied.status, denied.body.errors],
      [403, ["1 error occurred:\n\t* permission denied\n\n"]],
    );
    const creator = vault.createToken({ policies: ["create"] });
    const created = await encrypt("fresh", { plaintext: b64("x"), context: b64("c") }, creator);
    assert.equal(created.status, 200);
    assert.equal(vault.key("fresh")?.derived, true);
  });
});

describe("vault emulator: tokens, logins and policies", () => {
  test("a missing, revoked or expired token is a 403; Vault 1.16+ adds invalid token, OpenBao does not", async () => {
    const bao = await VaultTransitEmulator.start({ plainHttp: true, flavor: "openbao" });
    try {
      vault.createKey("t");
      const revoked = vault.createToken({ policies: ["root"] });
      vault.revokeToken(revoked);
      for (const token of [undefined, "hvs.bogus", revoked]) {
        const answer = await call("POST", "transit/encrypt/t", {
          token,
          body: { plaintext: b64("x") },
        });
        assert.deepEqual(
          [answer.status, answer.body.errors],
          [403, ["2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n"]],
        );
      }
      const response = await fetch(`${bao.url}/v1/transit/encrypt/t`, {
        method: "POST",
        headers: { "X-Vault-Token": "s.bogus" },
        body: "{}",
      });
      assert.deepEqual(
        [response.status, await response.json()],
        [403, { errors: ["permission denied"] }],
      );
    } finally {
      await bao.close();
    }
  });

  test("lookup-self describes the token; renew-self extends it, capped at the max TTL with a warning", async () => {
    const token = vault.createToken({ policies: ["p"], ttlSeconds: 60, explicitMaxTtlSeconds: 90 });
    const lookup = await call("GET", "auth/token/lookup-self", { token });
    assert.equal(lookup.status, 200);
    assert.equal(lookup.body.data?.creation_ttl, 60);
    assert.equal(lookup.body.data?.renewable, true);
    assert.equal(lookup.body.data?.explicit_max_ttl, 90);
    assert.deepEqual(lookup.body.data?.policies, ["default", "p"]);
    assert.ok(Number(lookup.body.data?.ttl) >= 59);
    const renewed = await call("POST", "auth/token/renew-self", {
      token,
      body: { increment: "80s" },
    });
    assert.equal(renewed.status, 200);
    assert.ok(Number(renewed.body.auth?.lease_duration) <= 90);
    assert.ok(Number(renewed.body.auth?.lease_duration) >= 79);
    const capped = await call("POST", "auth/token/renew-self", {
      token,
      body: { increment: "1h" },
    });
    assert.ok(Number(capped.body.auth?.lease_duration) < 3600);
    assert.match(
      String(capped.body.warnings?.[0]),
      /exceeded the effective max_ttl of .*; TTL value is capped accordingly/,
    );
    const fixed = vault.createToken({ policies: ["p"], renewable: false });
    const refused = await call("POST", "auth/token/renew-self", { token: fixed, body: {} });
    assert.deepEqual([refused.status, refused.body.errors], [400, ["lease is not renewable"]]);
  });

  test("AppRole and Kubernetes logins answer an auth block, or Vault's refusal", async () => {
    const approle = vault.enableAppRole();
    const { roleId, secretId } = approle.createRole("r", { policies: ["p"], tokenTtlSeconds: 120 });
    const login = await call("POST", "auth/approle/login", {
      token: undefined,
      body: { role_id: roleId, secret_id: secretId },
    });
    assert.equal(login.status, 200);
    assert.match(String(login.body.auth?.client_token), /^hvs\./);
    assert.equal(login.body.auth?.lease_duration, 120);
    assert.equal(login.body.auth?.renewable, true);
    const wrong = await call("POST", "auth/approle/login", {
      token: undefined,
      body: { role_id: roleId, secret_id: "nope" },
    });
    assert.deepEqual([wrong.status, wrong.body.errors], [400, ["invalid role or secret ID"]]);
    const kubernetes = vault.enableKubernetes();
    kubernetes.createRole("k", {
      policies: ["p"],
      serviceAccount: "sa",
      serviceAccountNamespace: "ns",
    });
    const jwt = kubernetes.serviceAccountToken("sa", "ns");
    const ok = await call("POST", "auth/kubernetes/login", {
      token: undefined,
      body: { role: "k", jwt },
    });
    assert.equal(ok.status, 200);
    const unknown = await call("POST", "auth/kubernetes/login", {
      token: undefined,
      body: { role: "x", jwt },
    });
    assert.deepEqual([unknown.status, unknown.body.errors], [400, ['invalid role name "x"']]);
    const forged = await call("POST", "auth/kubernetes/login", {
      token: undefined,
      body: { role: "k", jwt: `${jwt.slice(0, -2)}xx` },
    });
    assert.deepEqual([forged.status, forged.body.errors], [403, ["permission denied"]]);
  });

  test("capabilities-self says what the token may do on each path; the default policy allows it", async () => {
    vault.writePolicy("kms", { "transit/encrypt/*": ["update"], "transit/decrypt/kek": ["deny"] });
    const token = vault.createToken({ policies: ["kms"] });
    const answer = await call("POST", "sys/capabilities-self", {
      token,
      body: { paths: ["transit/encrypt/kek", "transit/decrypt/kek", "secret/x"] },
    });
    assert.equal(answer.status, 200);
    assert.deepEqual(answer.body.data, {
      "transit/encrypt/kek": ["update"],
      "transit/decrypt/kek": ["deny"],
      "secret/x": [],
    });
  });
});

describe("vault emulator: namespaces, sealing and faults", () => {
  test("a namespace's mounts answer only under its X-Vault-Namespace; a child's token cannot act in its parent", async () => {
    vault.createNamespace("team-b");
    vault.enableTransit("transit", "team-b");
    vault.createKey("scoped", { namespace: "team-b" });
    const inside = await call("POST", "transit/encrypt/scoped", {
      namespace: "team-b",
      body: { plaintext: b64("x") },
    });
    assert.equal(inside.status, 200);
    const outside = await call("POST", "transit/decrypt/scoped", {
      body: { ciphertext: inside.body.data?.ciphertext },
    });
    assert.deepEqual([outside.status, outside.body.errors], [400, ["encryption key not found"]]);
    const child = vault.createToken({ policies: ["root"], namespace: "team-b" });
    const parent = await call("GET", "auth/token/lookup-self", { token: child });
    assert.equal(parent.status, 403);
  });

  test("sealed is 503 for every request, logins too; throttling is 429 with Retry-After; unknown mounts 404", async () => {
    vault.seal();
    for (const path of ["transit/encrypt/k", "auth/approle/login"]) {
      const answer = await call("POST", path, { body: {} });
      assert.deepEqual([answer.status, answer.body.errors], [503, ["Vault is sealed"]]);
    }
    vault.unseal();
    vault.throttle(1, ["lookup"], 2);
    const limited = await call("GET", "auth/token/lookup-self");
    assert.deepEqual([limited.status, limited.headers.get("retry-after")], [429, "2"]);
    const unmounted = await call("POST", "kv/data/x", { body: {} });
    assert.equal(unmounted.status, 404);
    assert.match(String(unmounted.body.errors?.[0]), /^no handler for route "kv\/data\/x"/);
  });
});
