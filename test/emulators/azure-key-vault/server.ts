import { randomBytes, randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { badParameter, VaultError } from "./errors.js";
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
import { testTls } from "./tls.js";

/** Start-up options of the emulator. */
export interface AzureKeyVaultEmulatorOptions {
  /** The bearer token the emulator accepts; random by default. */
  token?: string;
  /** Tenant named in the challenge's authorization URL. */
  tenantId?: string;
  /** Resource named in the challenge; the SDK asks for `<resource>/.default`. */
  resource?: string;
}

/** A key version a test created: its name, version and versioned key URL (`kid`). */
export interface EmulatedKey {
  readonly name: string;
  readonly version: string;
  readonly kid: string;
}

/** Requests seen, by kind. Operation counters count authenticated requests, faulted or not. */
export type VaultCounters = Record<"requests" | "unauthenticated" | "rejectedTokens", number> &
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

const zeroCounters = (): VaultCounters => ({
  requests: 0,
  unauthenticated: 0,
  rejectedTokens: 0,
  get: 0,
  wrapkey: 0,
  unwrapkey: 0,
  encrypt: 0,
  decrypt: 0,
});

/**
 * An Azure Key Vault keys endpoint for tests (CLOUD-PROTOCOLS.md §B.2): real HTTPS on
 * 127.0.0.1 with a generated test CA, the bearer challenge, KeyBundles with real RSA `n`/`e`,
 * wrapkey/unwrapkey/encrypt/decrypt with RSA-OAEP-256, RSA-OAEP and (oct-HSM) A256KW, so the
 * unmodified @azure/keyvault-keys CryptographyClient works against it. Faults and key state
 * are driven through this class; counters and a request log show what the SDK sent.
 */
export class AzureKeyVaultEmulator {
  /** Vault URL, `https://127.0.0.1:<port>`. */
  readonly url: string;
  /** PEM of the test CA to trust (client option `tlsOptions: { ca }`). */
  readonly ca: string;
  /** The only bearer token accepted. */
  readonly token: string;
  /** The tenant the challenge names. */
  readonly tenantId: string;
  /** Requests seen, by kind. */
  counters: VaultCounters = zeroCounters();
  /** The most recent requests, oldest first (bounded). */
  readonly requests: RecordedRequest[] = [];
  readonly #server: Server;
  readonly #challenge: string;
  readonly #store = new KeyStore();
  readonly #faults = new Faults();
  readonly #timers = new Set<{ timer: NodeJS.Timeout; resolve: () => void }>();

  private constructor(server: Server, ca: string, options: AzureKeyVaultEmulatorOptions) {
    this.#server = server;
    this.url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
    this.ca = ca;
    this.token = options.token ?? randomBytes(24).toString("base64url");
    this.tenantId = options.tenantId ?? "72f988bf-86f1-41af-91ab-2d7cd011db47";
    // Quoted, space-free values: keyvault-common's parser splits on commas and spaces.
    this.#challenge = `Bearer authorization="https://login.microsoftonline.com/${this.tenantId}", resource="${options.resource ?? "https://vault.azure.net"}"`;
    server.on("request", (request: IncomingMessage, response: ServerResponse) => {
      void this.#handle(request, response);
    });
  }

  /** Starts an emulator on an ephemeral loopback port. */
  static async start(options: AzureKeyVaultEmulatorOptions = {}): Promise<AzureKeyVaultEmulator> {
    const tls = await testTls();
    const server = createServer({ key: tls.key, cert: tls.cert, minVersion: "TLSv1.2" });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    return new AzureKeyVaultEmulator(server, tls.ca, options);
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

  /** Clears counters, the request log and every scripted fault. */
  reset(): void {
    this.counters = zeroCounters();
    this.requests.length = 0;
    this.#faults.reset();
  }

  /** Stops listening, drops open connections and releases held responses. */
  async close(): Promise<void> {
    for (const held of this.#timers) {
      clearTimeout(held.timer);
      held.resolve();
    }
    this.#timers.clear();
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#server.closeAllConnections();
    await closed;
  }

  async #handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? "/", this.url);
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
      this.#authenticate(request.headers.authorization);
      record.authenticated = true;
      if (record.apiVersion === undefined)
        throw badParameter("The api-version query parameter is missing.");
      if (route === undefined) throw notRouted(request.method ?? "");
      this.counters[route.operation] += 1;
      await this.#hold(this.#faults.takeDelay(route.operation));
      const fault = this.#faults.takeError(route.operation);
      if (fault !== undefined) throw fault;
      this.#send(response, record, 200, this.#answer(route, body));
    } catch (error) {
      const answer =
        error instanceof VaultError
          ? error
          : new VaultError(500, "InternalServerError", "Emulator failure.");
      this.#send(response, record, answer.status, answer.body(), answer.headers);
    }
  }

  #authenticate(authorization: string | undefined): void {
    if (authorization === `Bearer ${this.token}`) return;
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

  #answer(route: Route, body: Buffer): Record<string, unknown> {
    const version = this.#store.find(route.name, route.version);
    if (route.operation === "get") return keyBundle(version, this.url);
    if (route.version === undefined || route.version === "") {
      throw badParameter("A key version is required for this operation.");
    }
    const { alg, value } = parseOperationBody(body);
    const result = runOperation(version, route.operation, alg, Buffer.from(value, "base64url"));
    const delivered = this.#faults.corrupt(route.operation, result);
    return { kid: kid(version, this.url), value: delivered.toString("base64url") };
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
    this.requests.push(entry);
    if (this.requests.length > MAX_RECORDED) this.requests.shift();
    return entry;
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
