import { randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { badParameter, type CallerIdentity, missingKeyPermission, VaultError } from "./errors.js";
import { type CorruptionMode, Faults, type FaultTarget, type VaultOperation } from "./faults.js";
import {
  KeyStore,
  type KeyVersion,
  type KeyVersionOptions,
  keyBundle,
  kid,
  type PayloadOperation,
  runOperation,
} from "./key-store.js";
import { ManagedIdentityEndpoint, type RecordedTokenRequest } from "./managed-identity.js";
import { type RecordedProxyRequest, VaultConnectProxy } from "./proxy.js";
import { testTls } from "./tls.js";

/** Start-up options of the emulator. */
export interface AzureKeyVaultEmulatorOptions {
  /** The bearer token the emulator accepts; random by default. */
  token?: string;
  /** Tenant named in the challenge's authorization URL. */
  tenantId?: string;
  /** Resource named in the challenge; the SDK asks for `<resource>/.default`. */
  resource?: string;
  /** Vault name of the production-form URL `https://<vaultName>.vault.azure.net`. */
  vaultName?: string;
  /** IDENTITY_HEADER secret of the managed-identity endpoint; random by default. */
  identityHeader?: string;
  /**
   * The key permissions of the caller's access policy. By default every operation the emulator
   * serves but `get`: what a least-privilege identity has, so code that needs `get` must say so.
   */
  keyPermissions?: readonly KeyPermission[];
}

/** Key permissions of a Key Vault access policy, for the operations the emulator serves. */
export type KeyPermission = "get" | "wrapKey" | "unwrapKey" | "encrypt" | "decrypt";

const PERMISSION_OF: Record<VaultOperation, KeyPermission> = {
  get: "get",
  wrapkey: "wrapKey",
  unwrapkey: "unwrapKey",
  encrypt: "encrypt",
  decrypt: "decrypt",
};
const DEFAULT_PERMISSIONS: readonly KeyPermission[] = [
  "wrapKey",
  "unwrapKey",
  "encrypt",
  "decrypt",
];
const LOCATION = "westeurope";

/**
 * Environment variables for a daemon (or any process) using the emulator with production
 * configuration only. A value of `undefined` means "must be unset": spreading the object over an
 * inherited environment removes the variable (child_process drops undefined values).
 */
export type DaemonEnvironment = Readonly<Record<string, string | undefined>>;

/** A key version a test created: its name, version and versioned key URL (`kid`). */
export interface EmulatedKey {
  readonly name: string;
  readonly version: string;
  readonly kid: string;
}

/**
 * Requests seen, by kind. Operation counters count authenticated requests, faulted or not;
 * `tunnels`/`refusedProxyRequests` count the proxy's opened and refused requests, and
 * `identityTokens`/`refusedIdentityRequests` the managed-identity endpoint's.
 */
export type VaultCounters = Record<
  | "requests"
  | "unauthenticated"
  | "rejectedTokens"
  | "tunnels"
  | "refusedProxyRequests"
  | "identityTokens"
  | "refusedIdentityRequests"
  | "refusedPermissions"
  | "expiredTokens",
  number
> &
  Record<VaultOperation, number>;

/** One request as the emulator saw it. */
export interface RecordedRequest {
  readonly method: string;
  readonly path: string;
  readonly operation: VaultOperation | undefined;
  readonly apiVersion: string | undefined;
  readonly bodyBytes: number;
  authenticated: boolean;
  status: number;
}

type Route = { operation: VaultOperation; name: string; version: string | undefined };

const MAX_BODY_BYTES = 64 * 1024;
const MAX_RECORDED = 1_000;
const ROUTE =
  /^\/keys\/([0-9a-zA-Z-]{1,127})(?:\/([0-9a-zA-Z]{0,64}))?(?:\/(wrapkey|unwrapkey|encrypt|decrypt))?\/?$/;
const BASE64URL = /^[A-Za-z0-9_-]*$/;
// Key Vault names: 3-24 characters, letters, digits and hyphens, starting with a letter.
const VAULT_NAME = /^[a-z][a-z0-9-]{1,22}[a-z0-9]$/;
const VAULT_HOST = /^([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.vault\.azure\.net)(?::443)?$/i;
/** NO_PROXY: the managed-identity endpoint (and any loopback call) must not use the proxy. */
const NO_PROXY = "127.0.0.1,localhost";

const zeroCounters = (): VaultCounters => ({
  requests: 0,
  unauthenticated: 0,
  rejectedTokens: 0,
  get: 0,
  wrapkey: 0,
  unwrapkey: 0,
  encrypt: 0,
  decrypt: 0,
  tunnels: 0,
  refusedProxyRequests: 0,
  identityTokens: 0,
  refusedIdentityRequests: 0,
  refusedPermissions: 0,
  expiredTokens: 0,
});

/**
 * An Azure Key Vault keys endpoint for tests (CLOUD-PROTOCOLS.md §B.2): real HTTPS on
 * 127.0.0.1 with a generated test CA, the bearer challenge, KeyBundles with real RSA `n`/`e`,
 * wrapkey/unwrapkey/encrypt/decrypt with RSA-OAEP-256, RSA-OAEP and (oct-HSM) A256KW, so the
 * unmodified @azure/keyvault-keys CryptographyClient works against it. Faults and key state
 * are driven through this class; counters and a request log show what the SDK sent.
 *
 * For processes that may only be configured as an operator would (the daemon), the emulator
 * also runs a CONNECT proxy that tunnels `*.vault.azure.net:443` to it and an App Service
 * managed-identity token endpoint: `daemonEnvironment()` gives HTTPS_PROXY, NO_PROXY,
 * NODE_EXTRA_CA_CERTS, IDENTITY_ENDPOINT and IDENTITY_HEADER, and `keyUrl()` the production key
 * URL, so the unmodified provider with DefaultAzureCredential and challenge-resource
 * verification works against it.
 */
export class AzureKeyVaultEmulator {
  /** Vault URL, `https://127.0.0.1:<port>`. */
  readonly url: string;
  /** Production-form vault URL, `https://<vaultName>.vault.azure.net` (through `proxyUrl`). */
  readonly vaultUrl: string;
  /** PEM of the test CA to trust (client option `tlsOptions: { ca }`). */
  readonly ca: string;
  /** Path of a file holding `ca` (NODE_EXTRA_CA_CERTS); removed by close(). */
  readonly caFile: string;
  /** HTTPS_PROXY: the CONNECT proxy to the emulator, `http://127.0.0.1:<port>`. */
  readonly proxyUrl: string;
  /** IDENTITY_ENDPOINT: the App Service managed-identity endpoint. */
  readonly identityEndpoint: string;
  /** IDENTITY_HEADER: the secret the managed-identity endpoint requires. */
  readonly identityHeader: string;
  /** A static bearer token accepted besides the managed-identity endpoint's tokens. */
  readonly token: string;
  /** The tenant the challenge names. */
  readonly tenantId: string;
  /** Requests seen, by kind. */
  counters: VaultCounters = zeroCounters();
  /** The most recent requests, oldest first (bounded). */
  readonly requests: RecordedRequest[] = [];
  /** The most recent proxy requests (CONNECTs and refused plain requests), oldest first. */
  readonly proxyRequests: RecordedProxyRequest[] = [];
  /** The most recent managed-identity token requests, oldest first. */
  readonly tokenRequests: RecordedTokenRequest[] = [];
  readonly #server: Server;
  readonly #proxy: VaultConnectProxy;
  readonly #identity: ManagedIdentityEndpoint;
  readonly #caDirectory: string;
  readonly #resource: string;
  readonly #challenge: string;
  readonly #store = new KeyStore();
  readonly #faults = new Faults();
  readonly #vaultName: string;
  readonly #startPermissions: ReadonlySet<KeyPermission>;
  #permissions: Set<KeyPermission>;
  // The principal the static token stands for; managed-identity tokens are the endpoint's.
  readonly #staticCaller = { appId: randomUUID(), objectId: randomUUID() };
  readonly #timers = new Set<{ timer: NodeJS.Timeout; resolve: () => void }>();

  private constructor(parts: {
    server: Server;
    proxy: VaultConnectProxy;
    identity: ManagedIdentityEndpoint;
    ca: string;
    caDirectory: string;
    vaultName: string;
    options: AzureKeyVaultEmulatorOptions;
  }) {
    const { server, proxy, identity, options } = parts;
    this.#server = server;
    this.#proxy = proxy;
    this.#identity = identity;
    this.#caDirectory = parts.caDirectory;
    this.#vaultName = parts.vaultName;
    this.#startPermissions = new Set(options.keyPermissions ?? DEFAULT_PERMISSIONS);
    this.#permissions = new Set(this.#startPermissions);
    this.url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
    this.vaultUrl = `https://${parts.vaultName}.vault.azure.net`;
    this.ca = parts.ca;
    this.caFile = join(parts.caDirectory, "ca.pem");
    this.proxyUrl = proxy.url;
    this.identityEndpoint = identity.endpoint;
    this.identityHeader = identity.header;
    this.token = options.token ?? randomBytes(24).toString("base64url");
    this.tenantId = options.tenantId ?? "72f988bf-86f1-41af-91ab-2d7cd011db47";
    this.#resource = options.resource ?? "https://vault.azure.net";
    // Quoted, space-free values: keyvault-common's parser splits on commas and spaces.
    this.#challenge = `Bearer authorization="https://login.microsoftonline.com/${this.tenantId}", resource="${this.#resource}"`;
    server.on("request", (request: IncomingMessage, response: ServerResponse) => {
      void this.#handle(request, response);
    });
  }

  /**
   * Starts an emulator on an ephemeral loopback port, with its CONNECT proxy and managed-identity
   * endpoint (each on its own ephemeral 127.0.0.1 port) and the CA written to `caFile`.
   */
  static async start(options: AzureKeyVaultEmulatorOptions = {}): Promise<AzureKeyVaultEmulator> {
    const vaultName = options.vaultName ?? "kms-envelope-emulator";
    if (!VAULT_NAME.test(vaultName)) throw new Error(`not a Key Vault name: ${vaultName}`);
    const tls = await testTls();
    const server = createServer({ key: tls.key, cert: tls.cert, minVersion: "TLSv1.2" });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    // The proxy and the endpoint report through `self`, set once the emulator exists; nothing
    // can connect to them before start() returns their addresses.
    let self: AzureKeyVaultEmulator | undefined;
    const started: { close(): Promise<void> }[] = [];
    try {
      const proxy = await VaultConnectProxy.start((server.address() as AddressInfo).port, {
        onRequest: (entry) => {
          if (self !== undefined) self.#onProxyRequest(entry);
        },
      });
      started.push(proxy);
      const identity = await ManagedIdentityEndpoint.start(
        {
          onTokenRequest: (entry) => {
            if (self !== undefined) self.#onTokenRequest(entry);
          },
        },
        options.identityHeader,
      );
      started.push(identity);
      const caDirectory = await mkdtemp(join(tmpdir(), "akv-emulator-"));
      started.push({ close: () => rm(caDirectory, { recursive: true, force: true }) });
      await writeFile(join(caDirectory, "ca.pem"), tls.ca);
      self = new AzureKeyVaultEmulator({
        server,
        proxy,
        identity,
        ca: tls.ca,
        caDirectory,
        vaultName,
        options,
      });
      return self;
    } catch (error) {
      await Promise.allSettled(started.map((part) => part.close()));
      await new Promise<void>((resolve) => server.close(() => resolve()));
      throw error;
    }
  }

  /**
   * The environment a daemon needs to use this emulator with production configuration only
   * (the `azure` provider's DefaultAzureCredential, no client options):
   * - HTTPS_PROXY: the CONNECT proxy, which tunnels `*.vault.azure.net:443` to the emulator;
   * - NO_PROXY: loopback, so the managed-identity request goes straight to its endpoint;
   * - NODE_EXTRA_CA_CERTS: the test CA (Node reads it at start-up only);
   * - IDENTITY_ENDPOINT, IDENTITY_HEADER: App Service managed identity (MSAL's AppService source);
   * - AZURE_TOKEN_CREDENTIALS=ManagedIdentityCredential: DefaultAzureCredential's chain is that
   *   one credential, so no developer credential (Azure CLI, azd, PowerShell, VS Code) is tried
   *   if the endpoint fails;
   * - unset (undefined), in case the parent environment has them: IDENTITY_SERVER_THUMBPRINT
   *   (MSAL would pick Service Fabric before App Service), AZURE_CLIENT_ID (a user-assigned
   *   identity; with AZURE_FEDERATED_TOKEN_FILE, the AKS token exchange with Entra instead of
   *   the endpoint) and NODE_TLS_REJECT_UNAUTHORIZED (the CA must really be trusted). The proxy
   *   variables need no unsetting: HTTPS_PROXY and NO_PROXY win over their lower-case forms,
   *   ALL_PROXY and HTTP_PROXY in core-rest-pipeline.
   */
  daemonEnvironment(): DaemonEnvironment {
    return {
      HTTPS_PROXY: this.proxyUrl,
      NO_PROXY,
      NODE_EXTRA_CA_CERTS: this.caFile,
      IDENTITY_ENDPOINT: this.identityEndpoint,
      IDENTITY_HEADER: this.identityHeader,
      AZURE_TOKEN_CREDENTIALS: "ManagedIdentityCredential",
      IDENTITY_SERVER_THUMBPRINT: undefined,
      AZURE_CLIENT_ID: undefined,
      AZURE_FEDERATED_TOKEN_FILE: undefined,
      NODE_TLS_REJECT_UNAUTHORIZED: undefined,
    };
  }

  /** Production-form versioned key URL, `https://<vaultName>.vault.azure.net/keys/<name>/<version>`. */
  keyUrl(name: string, version: string): string {
    return `${this.vaultUrl}/keys/${name}/${version}`;
  }

  /** Creates an RSA (or oct-HSM) key with one version. */
  createKey(name: string, options?: KeyVersionOptions): EmulatedKey {
    return this.#describe(this.#store.createKey(name, options));
  }

  /** Adds a new current version to a key. */
  addVersion(name: string, options?: KeyVersionOptions): EmulatedKey {
    return this.#describe(this.#store.addVersion(name, options));
  }

  /** Disables a version: unwrap/decrypt answer 403 KeyDisabled, GET shows enabled=false. */
  disable(key: EmulatedKey): void {
    this.#update(key, (version) => {
      version.enabled = false;
    });
  }

  /** Re-enables a version. */
  enable(key: EmulatedKey): void {
    this.#update(key, (version) => {
      version.enabled = true;
    });
  }

  /** Sets (or clears, with undefined) a version's not-before and expiry. */
  setValidity(key: EmulatedKey, validity: { notBefore?: Date; expiresOn?: Date }): void {
    this.#update(key, (version) => {
      version.notBefore = validity.notBefore;
      version.expiresOn = validity.expiresOn;
    });
  }

  /** Deletes a key with all its versions: every request for it answers 404 KeyNotFound. */
  deleteKey(name: string): void {
    this.#store.deleteKey(name);
  }

  /** Answers matching requests with 403 Forbidden (ForbiddenByRbac) until allowAccess(). */
  denyAccess(target?: FaultTarget): void {
    this.#faults.denyAccess(target);
  }

  /** Lifts denyAccess. */
  allowAccess(): void {
    this.#faults.allowAccess();
  }

  /** Adds key permissions to the caller's access policy (until reset()). */
  grant(...permissions: KeyPermission[]): void {
    for (const permission of permissions) this.#permissions.add(permission);
  }

  /** Removes key permissions from the caller's access policy (until reset()). */
  revoke(...permissions: KeyPermission[]): void {
    for (const permission of permissions) this.#permissions.delete(permission);
  }

  /** Answers the next `count` matching requests with 429 and `Retry-After` (0 s by default). */
  throttle(count: number, options?: FaultTarget & { retryAfterSeconds?: number }): void {
    this.#faults.throttle(count, options);
  }

  /** Answers the next `count` matching requests with 500 or 503. */
  fail(
    count: number,
    status: 500 | 503,
    options?: FaultTarget & { retryAfterSeconds?: number },
  ): void {
    this.#faults.fail(count, status, options);
  }

  /** Holds matching responses for `ms` (the next `count`, or all until delay(0)). */
  delay(ms: number, options?: FaultTarget & { count?: number }): void {
    this.#faults.delay(ms, options);
  }

  /** Damages the next unwrap or decrypt result (truncated by one byte by default). */
  corruptNextUnwrap(mode?: CorruptionMode): void {
    this.#faults.corruptNextUnwrap(mode);
  }

  /** Invalidates every managed-identity token issued so far (the vault answers 401). */
  revokeIdentityTokens(): void {
    this.#identity.revokeTokens();
  }

  /** Every managed-identity token issued so far is expired from now on (the vault answers 401 TokenExpired). */
  expireIdentityTokens(): void {
    this.#identity.expireTokens();
  }

  /** How long managed-identity tokens issued from now on live (24 hours by default). */
  setIdentityTokenLifetime(seconds: number): void {
    this.#identity.tokenLifetimeSeconds = seconds;
  }

  /**
   * The managed-identity endpoint refuses every token request (400, as when the identity was
   * removed from the resource) until resumeIdentityTokens(); tokens already issued stay valid
   * until they expire.
   */
  stopIdentityTokens(): void {
    this.#identity.refuse("No managed identity is assigned to this resource (emulator).");
  }

  /** Lifts stopIdentityTokens(). */
  resumeIdentityTokens(): void {
    this.#identity.resume();
  }

  /**
   * Clears counters, the request logs and every scripted fault, and gives the caller the key
   * permissions it started with.
   */
  reset(): void {
    this.#permissions = new Set(this.#startPermissions);
    this.counters = zeroCounters();
    this.requests.length = 0;
    this.proxyRequests.length = 0;
    this.tokenRequests.length = 0;
    this.#faults.reset();
  }

  /**
   * Stops listening, drops open connections and tunnels, releases held responses and removes
   * the CA file.
   */
  async close(): Promise<void> {
    for (const held of this.#timers) {
      clearTimeout(held.timer);
      held.resolve();
    }
    this.#timers.clear();
    await this.#proxy.close();
    await this.#identity.close();
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#server.closeAllConnections();
    await closed;
    await rm(this.#caDirectory, { recursive: true, force: true });
  }

  async #handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? "/", this.url);
    const vaultUrl = this.#vaultUrlOf(request);
    const route = parseRoute(request.method ?? "", url.pathname);
    this.counters.requests += 1;
    let record: RecordedRequest | undefined;
    try {
      const body = await readBody(request);
      record = this.#record({
        method: request.method ?? "",
        path: url.pathname,
        operation: route?.operation,
        apiVersion: url.searchParams.get("api-version") ?? undefined,
        bodyBytes: body.length,
        authenticated: false,
        status: 0,
      });
      const caller = this.#authenticate(request.headers.authorization);
      record.authenticated = true;
      if (record.apiVersion === undefined)
        throw badParameter("The api-version query parameter is missing.");
      if (route === undefined) throw notRouted(request.method ?? "");
      this.counters[route.operation] += 1;
      await this.#hold(this.#faults.takeDelay(route.operation));
      this.#authorize(caller, route.operation);
      const fault = this.#faults.takeError(route.operation);
      if (fault !== undefined) throw fault;
      this.#send(response, record, 200, this.#answer(route, body, vaultUrl));
    } catch (error) {
      const answer =
        error instanceof VaultError
          ? error
          : new VaultError(500, "InternalServerError", "Emulator failure.");
      this.#send(response, record, answer.status, answer.body(), answer.headers);
    }
  }

  #authenticate(authorization: string | undefined): CallerIdentity {
    if (authorization === `Bearer ${this.token}`)
      return { ...this.#staticCaller, tenantId: this.tenantId };
    const bearer = /^Bearer (\S+)$/.exec(authorization ?? "")?.[1];
    const verdict =
      bearer === undefined ? "unknown" : this.#identity.verdict(bearer, this.#resource);
    if (verdict === "valid") return { ...this.#identity.principal, tenantId: this.tenantId };
    if (verdict === "expired") {
      this.counters.expiredTokens += 1;
      // The service's words for an expired token (seen in SDK issue reports).
      throw new VaultError(
        401,
        "Unauthorized",
        "[TokenExpired] Error validating token: 'S2S12086'.",
        {
          headers: { "WWW-Authenticate": this.#challenge },
        },
      );
    }
    if (authorization === undefined) this.counters.unauthenticated += 1;
    else this.counters.rejectedTokens += 1;
    throw new VaultError(
      401,
      "Unauthorized",
      authorization === undefined
        ? "AKV10000: Request is missing a Bearer or PoP token."
        : "AKV10032: Invalid issuer or the token is not valid for this vault.",
      { headers: { "WWW-Authenticate": this.#challenge } },
    );
  }

  // Access policies are checked before the key is looked up: a caller without `get` learns
  // nothing, not even whether the key exists.
  #authorize(caller: CallerIdentity, operation: VaultOperation): void {
    const permission = PERMISSION_OF[operation];
    if (this.#permissions.has(permission)) return;
    this.counters.refusedPermissions += 1;
    throw missingKeyPermission(caller, permission, this.#vaultName, LOCATION);
  }

  #answer(route: Route, body: Buffer, vaultUrl: string): Record<string, unknown> {
    const version = this.#store.find(route.name, route.version);
    if (route.operation === "get") return keyBundle(version, vaultUrl);
    if (route.version === undefined || route.version === "") {
      throw badParameter("A key version is required for this operation.");
    }
    const { alg, value } = parseOperationBody(body);
    const result = runOperation(version, route.operation, alg, Buffer.from(value, "base64url"));
    const delivered = this.#faults.corrupt(route.operation, result);
    return { kid: kid(version, vaultUrl), value: delivered.toString("base64url") };
  }

  // The service names keys by the host the client asked for: requests tunnelled for
  // `<name>.vault.azure.net` get kids under that vault URL, direct ones under `url`.
  #vaultUrlOf(request: IncomingMessage): string {
    const host = VAULT_HOST.exec(request.headers.host ?? "")?.[1];
    return host === undefined ? this.url : `https://${host.toLowerCase()}`;
  }

  #onProxyRequest(entry: RecordedProxyRequest): void {
    bounded(this.proxyRequests, entry);
    if (entry.allowed) this.counters.tunnels += 1;
    else this.counters.refusedProxyRequests += 1;
  }

  #onTokenRequest(entry: RecordedTokenRequest): void {
    bounded(this.tokenRequests, entry);
    if (entry.status === 200) this.counters.identityTokens += 1;
    else this.counters.refusedIdentityRequests += 1;
  }

  #send(
    response: ServerResponse,
    record: RecordedRequest | undefined,
    status: number,
    body: unknown,
    headers: Record<string, string> = {},
  ): void {
    if (record !== undefined) record.status = status;
    if (response.destroyed || response.writableEnded) return;
    response.writeHead(status, {
      "content-type": "application/json; charset=utf-8",
      "cache-control": "no-cache",
      "x-ms-request-id": randomUUID(),
      "x-ms-keyvault-region": "emulator",
      "x-ms-keyvault-service-version": "1.9.0.0",
      ...headers,
    });
    response.end(JSON.stringify(body));
  }

  #hold(ms: number): Promise<void> {
    if (ms <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const held = {
        resolve,
        timer: setTimeout(() => {
          this.#timers.delete(held);
          resolve();
        }, ms),
      };
      this.#timers.add(held);
    });
  }

  #record(entry: RecordedRequest): RecordedRequest {
    return bounded(this.requests, entry);
  }

  #describe(version: KeyVersion): EmulatedKey {
    return { name: version.name, version: version.version, kid: kid(version, this.url) };
  }

  #update(key: EmulatedKey, change: (version: KeyVersion) => void): void {
    const version = this.#store.version(key.name, key.version);
    change(version);
    version.updated = new Date();
  }
}

function bounded<T>(log: T[], entry: T): T {
  log.push(entry);
  if (log.length > MAX_RECORDED) log.shift();
  return entry;
}

function parseRoute(method: string, path: string): Route | undefined {
  const match = ROUTE.exec(path);
  if (match === null) return undefined;
  const [, name = "", version, operation] = match;
  if (method === "GET" && operation === undefined) return { operation: "get", name, version };
  if (method === "POST" && operation !== undefined) {
    return { operation: operation as PayloadOperation, name, version };
  }
  return undefined;
}

function notRouted(method: string): VaultError {
  return method === "GET" || method === "POST"
    ? new VaultError(404, "NotFound", "The emulator does not serve this path.")
    : new VaultError(405, "MethodNotAllowed", `The emulator does not serve ${method}.`);
}

function parseOperationBody(body: Buffer): { alg: string; value: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString("utf8"));
  } catch {
    throw badParameter("The request body is not valid JSON.");
  }
  const { alg, value } = (parsed ?? {}) as Record<string, unknown>;
  if (typeof alg !== "string" || alg === "") throw badParameter("The 'alg' parameter is required.");
  if (typeof value !== "string" || !BASE64URL.test(value)) {
    throw badParameter("The 'value' parameter must be base64url.");
  }
  return { alg, value };
}

async function readBody(request: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES)
      throw new VaultError(413, "RequestTooLarge", "The request body is too large.");
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}
