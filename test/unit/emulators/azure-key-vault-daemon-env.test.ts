import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { connect } from "node:net";
import { after, before, beforeEach, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { AzureKeyVaultEmulator } from "../../emulators/azure-key-vault/server.js";

const repoRoot = fileURLToPath(new URL("../../../", import.meta.url));
const childScript = fileURLToPath(
  new URL("../../emulators/azure-key-vault/daemon-env-round-trip.ts", import.meta.url),
);

let emulator: AzureKeyVaultEmulator;

before(async () => {
  emulator = await AzureKeyVaultEmulator.start();
});

after(() => emulator.close());
beforeEach(() => emulator.reset());

interface ChildResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the round-trip script with only `environment` plus PATH and HOME. */
function roundTrip(
  keyUrl: string,
  environment: Readonly<Record<string, string | undefined>>,
): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", childScript, keyUrl], {
      cwd: repoRoot,
      env: { PATH: process.env.PATH, HOME: process.env.HOME, ...environment },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString("utf8");
    });
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString("utf8");
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Sends one raw request line (and headers) to the proxy; resolves with its status line. */
function proxyStatus(requestHead: string): Promise<string> {
  const { port } = new URL(emulator.proxyUrl);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), "127.0.0.1");
    let received = "";
    socket.on("data", (chunk: Buffer) => {
      received += chunk.toString("latin1");
      const end = received.indexOf("\r\n");
      if (end >= 0) {
        socket.destroy();
        resolve(received.slice(0, end));
      }
    });
    socket.on("error", reject);
    socket.on("close", () => resolve(received.split("\r\n")[0] ?? ""));
    socket.write(requestHead);
  });
}

function get(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: Record<string, unknown> }> {
  const send = url.startsWith("https:") ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const outgoing = send(url, { headers, ca: emulator.ca }, (incoming) => {
      const chunks: Buffer[] = [];
      incoming.on("data", (chunk: Buffer) => chunks.push(chunk));
      incoming.on("end", () =>
        resolve({
          status: incoming.statusCode ?? 0,
          body: JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}"),
        }),
      );
    });
    outgoing.on("error", reject);
    outgoing.end();
  });
}

describe("Azure Key Vault emulator: production configuration for a daemon", () => {
  test("daemonEnvironment() gives the proxy, the CA file, the managed identity and nothing else", async () => {
    const environment = emulator.daemonEnvironment();
    const set = Object.fromEntries(
      Object.entries(environment).filter(([, value]) => value !== undefined),
    );
    assert.deepEqual(set, {
      HTTPS_PROXY: emulator.proxyUrl,
      NO_PROXY: "127.0.0.1,localhost",
      NODE_EXTRA_CA_CERTS: emulator.caFile,
      IDENTITY_ENDPOINT: emulator.identityEndpoint,
      IDENTITY_HEADER: emulator.identityHeader,
      AZURE_TOKEN_CREDENTIALS: "ManagedIdentityCredential",
    });
    assert.match(emulator.proxyUrl, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.match(emulator.identityEndpoint, /^http:\/\/127\.0\.0\.1:\d+\/msi\/token$/);
    assert.equal(await readFile(emulator.caFile, "utf8"), emulator.ca);
    // Unset, so spreading it over an inherited environment cannot pick another identity source.
    for (const name of [
      "IDENTITY_SERVER_THUMBPRINT",
      "AZURE_CLIENT_ID",
      "AZURE_FEDERATED_TOKEN_FILE",
    ]) {
      assert.ok(name in environment && environment[name] === undefined, name);
    }
    assert.equal(
      emulator.keyUrl("master", "0123abcd"),
      "https://kms-envelope-emulator.vault.azure.net/keys/master/0123abcd",
    );
  });

  test("the unmodified azure provider round-trips in a process configured by environment only", async () => {
    const key = emulator.createKey("daemon-env");
    const keyUrl = emulator.keyUrl(key.name, key.version);
    const result = await roundTrip(keyUrl, emulator.daemonEnvironment());
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout.trim(), "OK");

    // Every vault connection went through the proxy, to the vault host name, port 443.
    const host = new URL(emulator.vaultUrl).host;
    assert.ok(emulator.counters.tunnels >= 1);
    assert.equal(emulator.counters.refusedProxyRequests, 0);
    for (const entry of emulator.proxyRequests) {
      assert.deepEqual(
        { method: entry.method, target: entry.target, status: entry.status },
        { method: "CONNECT", target: `${host}:443`, status: 200 },
      );
    }
    // One managed-identity token request, straight to the endpoint (NO_PROXY), in MSAL's form.
    assert.equal(emulator.counters.identityTokens, 1);
    assert.equal(emulator.counters.refusedIdentityRequests, 0);
    assert.deepEqual(emulator.tokenRequests, [
      {
        method: "GET",
        path: "/msi/token",
        apiVersion: "2019-08-01",
        resource: "https://vault.azure.net",
        identity: undefined,
        headerValid: true,
        status: 200,
      },
    ]);
    // The challenge round trip, then only requests carrying the issued token.
    assert.equal(emulator.counters.unauthenticated, 1);
    assert.equal(emulator.counters.rejectedTokens, 0);
    assert.equal(emulator.counters.wrapkey, 1);
    assert.equal(emulator.counters.unwrapkey, 1);
    // The identity has no `get`: the provider's read and the SDK's were refused, once each.
    assert.equal(emulator.counters.refusedPermissions, 2);
    assert.ok(
      emulator.requests.every(
        (entry) =>
          entry.status === 200 ||
          !entry.authenticated ||
          (entry.method === "GET" && entry.status === 403),
      ),
    );
  });

  test("createProvider with no algorithm option round-trips a Managed HSM oct-HSM key (A256KW)", async () => {
    // Following the key's type means reading it.
    emulator.grant("get");
    const key = emulator.createKey("daemon-env-oct-hsm", { type: "oct-HSM" });
    const result = await roundTrip(
      emulator.keyUrl(key.name, key.version),
      emulator.daemonEnvironment(),
    );
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout.trim(), "OK");
    // The emulator's oct-HSM keys take A256KW only: both operations succeeding means both used it.
    assert.deepEqual([emulator.counters.wrapkey, emulator.counters.unwrapkey], [1, 1]);
    assert.ok(
      emulator.requests.every((entry) => entry.status === 200 || !entry.authenticated),
      "every authenticated request succeeded",
    );
  });

  test("without get, KMS_ENVELOPE_AZURE_WRAP_ALGORITHM=A256KW round-trips an oct-HSM key", async () => {
    const key = emulator.createKey("daemon-env-pinned", { type: "oct-HSM" });
    const result = await roundTrip(emulator.keyUrl(key.name, key.version), {
      ...emulator.daemonEnvironment(),
      KMS_ENVELOPE_AZURE_WRAP_ALGORITHM: "A256KW",
    });
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual([emulator.counters.wrapkey, emulator.counters.unwrapkey], [1, 1]);
    assert.equal(emulator.counters.refusedPermissions, 2);
  });

  test("a wrong IDENTITY_HEADER gets no token, and the vault sees no key operation", async () => {
    const key = emulator.createKey("daemon-env-bad-header");
    const result = await roundTrip(emulator.keyUrl(key.name, key.version), {
      ...emulator.daemonEnvironment(),
      IDENTITY_HEADER: "not-the-secret",
    });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /no Microsoft Entra token for Key Vault/);
    assert.ok(emulator.counters.refusedIdentityRequests >= 1);
    assert.equal(emulator.counters.identityTokens, 0);
    assert.ok(emulator.tokenRequests.every((entry) => !entry.headerValid && entry.status === 401));
    assert.deepEqual([emulator.counters.wrapkey, emulator.counters.unwrapkey], [0, 0]);
  });
});

describe("Azure Key Vault emulator: CONNECT proxy", () => {
  test("refuses every target but *.vault.azure.net:443, and plain proxy requests", async () => {
    const { port } = new URL(emulator.url);
    const refused = [
      "example.com:443",
      "login.microsoftonline.com:443",
      `127.0.0.1:${port}`,
      `localhost:${port}`,
      "kms-envelope-emulator.vault.azure.net:80",
      "vault.azure.net:443",
      "a.b.vault.azure.net:443",
      "kms-envelope-emulator.vault.azure.net.example.com:443",
      "kms-envelope-emulator.vault.azure.net",
    ];
    for (const target of refused) {
      const status = await proxyStatus(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
      assert.match(status, /^HTTP\/1\.1 403 /, target);
    }
    const imds = "http://169.254.169.254/metadata/identity/oauth2/token?resource=x";
    assert.match(
      await proxyStatus(`GET ${imds} HTTP/1.1\r\nHost: 169.254.169.254\r\nMetadata: true\r\n\r\n`),
      /^HTTP\/1\.1 403 /,
    );
    assert.equal(emulator.counters.tunnels, 0);
    assert.equal(emulator.counters.refusedProxyRequests, refused.length + 1);
    assert.deepEqual(
      emulator.proxyRequests.map((entry) => entry.target),
      [...refused, imds],
    );
    assert.ok(emulator.proxyRequests.every((entry) => !entry.allowed && entry.status === 403));
  });

  test("tunnels a vault host name to the emulator's TLS server", async () => {
    const target = "kms-envelope-emulator.vault.azure.net:443";
    assert.equal(
      await proxyStatus(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`),
      "HTTP/1.1 200 Connection Established",
    );
    assert.equal(emulator.counters.tunnels, 1);
  });
});

describe("Azure Key Vault emulator: managed-identity endpoint", () => {
  const query = "api-version=2019-08-01&resource=https%3A%2F%2Fvault.azure.net";

  test("requires X-IDENTITY-HEADER, the App Service api-version and a resource", async () => {
    const url = `${emulator.identityEndpoint}?${query}`;
    const missing = await get(url);
    assert.equal(missing.status, 401);
    assert.match(String(missing.body.message), /X-IDENTITY-HEADER header is missing/);
    assert.equal((await get(url, { "X-IDENTITY-HEADER": "wrong" })).status, 401);
    const header = { "X-IDENTITY-HEADER": emulator.identityHeader };
    assert.equal(
      (await get(`${emulator.identityEndpoint}?api-version=2017-09-01&resource=x`, header)).status,
      400,
    );
    assert.equal(
      (await get(`${emulator.identityEndpoint}?api-version=2019-08-01`, header)).status,
      400,
    );
    assert.equal(emulator.counters.refusedIdentityRequests, 4);
    assert.equal(emulator.counters.identityTokens, 0);
  });

  test("issues App Service token responses that the vault accepts for its own resource only", async () => {
    emulator.grant("get");
    emulator.createKey("identity-token");
    const header = { "X-IDENTITY-HEADER": emulator.identityHeader };
    const issued = await get(`${emulator.identityEndpoint}?${query}`, header);
    assert.equal(issued.status, 200);
    const { access_token: token, expires_on: expiresOn, ...rest } = issued.body;
    assert.equal(typeof token, "string");
    assert.match(String(expiresOn), /^\d+$/);
    assert.ok(Number(expiresOn) > Date.now() / 1000 + 3600);
    assert.deepEqual(Object.keys(rest).sort(), ["client_id", "resource", "token_type"]);
    assert.equal(rest.resource, "https://vault.azure.net");
    assert.equal(rest.token_type, "Bearer");

    const keyPath = `${emulator.url}/keys/identity-token?api-version=7.4`;
    assert.equal((await get(keyPath, { authorization: `Bearer ${token}` })).status, 200);

    const other = await get(
      `${emulator.identityEndpoint}?api-version=2019-08-01&resource=https%3A%2F%2Fmanagement.azure.com`,
      header,
    );
    assert.equal(other.status, 200);
    const wrongAudience = await get(keyPath, {
      authorization: `Bearer ${other.body.access_token}`,
    });
    assert.equal(wrongAudience.status, 401);
    assert.equal((await get(keyPath, { authorization: "Bearer made-up" })).status, 401);

    emulator.revokeIdentityTokens();
    assert.equal((await get(keyPath, { authorization: `Bearer ${token}` })).status, 401);
    assert.equal(emulator.counters.rejectedTokens, 3);
  });
});
