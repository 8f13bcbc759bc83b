import { randomUUID } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { testTls } from "../azure-key-vault/tls.js";
import { badRequest, invalidToken, noHandler, permissionDenied, VaultError } from "./errors.js";
import { AppRoleMethod, KubernetesMethod } from "./login-methods.js";
import {
  type Capability,
  Policies,
  type PolicyRules,
  type TokenEntry,
  type TokenOptions,
  TokenStore,
} from "./tokens.js";
import { TransitKey, type TransitKeyType } from "./transit-keys.js";
import { transitRoute } from "./transit-routes.js";

/** Start-up options of the emulator. */
export interface VaultEmulatorOptions {
  /**
   * Which server to play where they differ: "vault" (1.16+) says `invalid token` in the 403 for
   * a dead token; "openbao" (and older Vault) says only `permission denied`.
   */
  flavor?: "vault" | "openbao";
  /** Serve plain http on loopback instead of https (a Vault Agent listener, a dev server). */
  plainHttp?: boolean;
  /** The system max TTL of tokens, in seconds (Vault's default is 32 days). */
  maxTtlSeconds?: number;
}

/** What a request was, for counters, faults and the request log. */
export type VaultOperation =
  | "encrypt"
  | "decrypt"
  | "keys"
  | "login"
  | "lookup"
  | "renew"
  | "capabilities"
  | "other";

/** One request as the emulator saw it (never the token itself). */
export interface RecordedRequest {
  readonly method: string;
  /** The path after `/v1/`. */
  readonly path: string;
  /** The X-Vault-Namespace header, if sent. */
  readonly namespace: string | undefined;
  readonly operation: VaultOperation;
  readonly hadToken: boolean;
  /** When it arrived (epoch ms). */
  readonly at: number;
  status: number;
}

/** Where a key lives: its mount and namespace (the defaults are `transit` in the root). */
export interface KeyLocation {
  mount?: string;
  namespace?: string;
}

interface ScriptedFault {
  remaining: number;
  status: number;
  errors: string[];
  headers: Record<string, string>;
  operations: readonly VaultOperation[] | undefined;
}

const MAX_BODY_BYTES = 1024 * 1024;
const MAX_RECORDED = 1_000;

/**
 * A HashiCorp Vault / OpenBao server for tests, written from the public HTTP API documentation:
 * the Transit engine (keys with versions, rotate, min_decryption_version, encrypt and decrypt
 * with associated data and derivation context), the token store (TTLs, renew-self capped at
 * the max TTL, lookup-self, revocation), AppRole and Kubernetes login, ACL policies with
 * sys/capabilities-self, namespaces (X-Vault-Namespace), the sealed state, and every answer as
 * Vault sends it: its status codes and `{"errors": [...]}` bodies. Real HTTPS on 127.0.0.1
 * with a generated CA (or plain http). Faults (throttling, failures, delays) are scripted.
 */
export class VaultTransitEmulator {
  /** `https://127.0.0.1:<port>` (http with plainHttp). */
  readonly url: string;
  /** PEM of the CA that issued the server certificate. */
  readonly ca: string;
  /** A file holding `ca`, for VAULT_CACERT; removed by close(). */
  readonly caFile: string;
  /** Requests seen, by operation, and in all. */
  counters: Record<VaultOperation | "requests", number> = zeroCounters();
  /** The most recent requests, oldest first. */
  readonly requests: RecordedRequest[] = [];
  readonly #server: Server;
  readonly #directory: string;
  readonly #flavor: "vault" | "openbao";
  readonly #tokens: TokenStore;
  readonly #policies = new Policies();
  readonly #namespaces = new Set<string>([""]);
  readonly #transit = new Map<string, Map<string, TransitKey>>();
  readonly #logins = new Map<string, AppRoleMethod | KubernetesMethod>();
  readonly #faults: ScriptedFault[] = [];
  readonly #waiting = new Set<{ timer: NodeJS.Timeout; resolve: () => void }>();
  #delayMs = 0;
  #sealed = false;
  #corruptDecrypts = 0;

  private constructor(
    server: Server,
    ca: string,
    directory: string,
    options: VaultEmulatorOptions,
  ) {
    this.#server = server;
    this.#directory = directory;
    const { port } = server.address() as AddressInfo;
    this.url = `${options.plainHttp === true ? "http" : "https"}://127.0.0.1:${port}`;
    this.ca = ca;
    this.caFile = join(directory, "ca.pem");
    this.#flavor = options.flavor ?? "vault";
    this.#tokens = new TokenStore(options.maxTtlSeconds ?? 32 * 24 * 3600);
    this.enableTransit();
    server.on("request", (request: IncomingMessage, response: ServerResponse) => {
      void this.#handle(request, response);
    });
  }

  /** Starts an emulator on an ephemeral loopback port with `transit` mounted in the root. */
  static async start(options: VaultEmulatorOptions = {}): Promise<VaultTransitEmulator> {
    const tls = await testTls();
    const server =
      options.plainHttp === true
        ? createHttpServer()
        : createHttpsServer({ key: tls.key, cert: tls.cert, minVersion: "TLSv1.2" });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    const directory = await mkdtemp(join(tmpdir(), "vault-emulator-"));
    await writeFile(join(directory, "ca.pem"), tls.ca);
    return new VaultTransitEmulator(server, tls.ca, directory, options);
  }

  /** The key reference of a key: `<url>/v1/<mount>/keys/<name>[?namespace=<ns>]`. */
  keyRef(name: string, location: KeyLocation = {}): string {
    const { mount, namespace } = place(location);
    return `${this.url}/v1/${mount}/keys/${name}${namespace === "" ? "" : `?namespace=${namespace}`}`;
  }

  /** Creates a namespace (and its parents). */
  createNamespace(path: string): void {
    const parts = path.split("/");
    for (let index = 1; index <= parts.length; index += 1)
      this.#namespaces.add(parts.slice(0, index).join("/"));
  }

  /** Mounts a Transit engine. */
  enableTransit(mount = "transit", namespace = ""): void {
    this.#transit.set(`${namespace}\u0000${mount}`, new Map());
  }

  /** Mounts AppRole auth; its object creates roles and secret_ids. */
  enableAppRole(mount = "approle", namespace = ""): AppRoleMethod {
    const method = new AppRoleMethod();
    this.#logins.set(`${namespace}\u0000auth/${mount}`, method);
    return method;
  }

  /** Mounts Kubernetes auth; its object creates roles and service-account tokens. */
  enableKubernetes(mount = "kubernetes", namespace = ""): KubernetesMethod {
    const method = new KubernetesMethod();
    this.#logins.set(`${namespace}\u0000auth/${mount}`, method);
    return method;
  }

  /** Creates a Transit key (aes256-gcm96 unless told otherwise). */
  createKey(
    name: string,
    options: KeyLocation & { type?: TransitKeyType; derived?: boolean } = {},
  ): TransitKey {
    const key = new TransitKey(name, options.type, options.derived);
    this.#keys(place(options)).set(name, key);
    return key;
  }

  /** The Transit key of that name, if any. */
  key(name: string, location: KeyLocation = {}): TransitKey | undefined {
    return this.#keys(place(location)).get(name);
  }

  /** Deletes a Transit key: everything wrapped with it is lost. */
  deleteKey(name: string, location: KeyLocation = {}): void {
    this.#keys(place(location)).delete(name);
  }

  /** Writes (or replaces) an ACL policy. */
  writePolicy(name: string, rules: PolicyRules, namespace = ""): void {
    this.#policies.write(namespace, name, rules);
  }

  /** Deletes an ACL policy: tokens that have it lose what it granted. */
  deletePolicy(name: string, namespace = ""): void {
    this.#policies.delete(namespace, name);
  }

  /** Creates a token directly (auth/token/create); returns it. */
  createToken(options: TokenOptions = {}): string {
    return this.#tokens.create(options).id;
  }

  /** Revokes a token: Vault then answers 403 to it. */
  revokeToken(token: string): void {
    this.#tokens.revoke(token);
  }

  /** Revokes every token one login path issued (e.g. `auth/approle/login`). */
  revokeLogins(path: string): void {
    this.#tokens.revokeByPath(path);
  }

  /** Seconds the token has left; undefined when it is dead or never expires. */
  tokenTtl(token: string): number | undefined {
    const entry = this.#tokens.find(token);
    if (entry?.expiresAt === undefined) return undefined;
    return (entry.expiresAt - Date.now()) / 1000;
  }

  /** Seals Vault: every request is answered 503 "Vault is sealed" until unsealed. */
  seal(): void {
    this.#sealed = true;
  }

  unseal(): void {
    this.#sealed = false;
  }

  /** The next `count` requests (of these operations) are rate-limited: 429 with Retry-After. */
  throttle(count: number, operations?: readonly VaultOperation[], retryAfterSeconds = 1): void {
    this.#faults.push({
      remaining: count,
      status: 429,
      errors: ["rate limit quota exceeded"],
      headers: { "Retry-After": String(retryAfterSeconds) },
      operations,
    });
  }

  /** The next `count` requests (of these operations) fail with `status` (500 by default). */
  fail(count: number, status = 500, operations?: readonly VaultOperation[]): void {
    const errors =
      status === 503 ? ["Vault is sealed"] : [`1 error occurred:\n\t* internal error\n\n`];
    this.#faults.push({ remaining: count, status, errors, headers: {}, operations });
  }

  /** The next `count` successful decrypts answer a plaintext with one bit flipped. */
  corruptNextDecrypt(count = 1): void {
    this.#corruptDecrypts += count;
  }

  /** Holds every answer back this long (0 ends it). */
  delay(milliseconds: number): void {
    this.#delayMs = milliseconds;
  }

  /** Ends faults, delays and the sealed state; counters and the log start again. */
  reset(): void {
    this.#faults.length = 0;
    this.#delayMs = 0;
    this.#sealed = false;
    this.#corruptDecrypts = 0;
    this.#release();
    this.counters = zeroCounters();
    this.requests.length = 0;
  }

  async close(): Promise<void> {
    this.#release();
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
    await rm(this.#directory, { recursive: true, force: true });
  }

  #keys(location: { mount: string; namespace: string }): Map<string, TransitKey> {
    const keys = this.#transit.get(`${location.namespace}\u0000${location.mount}`);
    if (keys === undefined)
      throw new Error(`no Transit mount ${location.mount} in namespace "${location.namespace}"`);
    return keys;
  }

  #release(): void {
    for (const waiting of this.#waiting) {
      clearTimeout(waiting.timer);
      waiting.resolve();
    }
    this.#waiting.clear();
  }

  async #handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? "/", "http://vault");
    const path = url.pathname.replace(/^\/v1\//, "").replace(/\/+$/, "");
    const header = request.headers["x-vault-namespace"];
    const namespace = typeof header === "string" ? header.replace(/^\/+|\/+$/g, "") : undefined;
    const operation = operationOf(request.method ?? "GET", path);
    const token = tokenOf(request);
    const record: RecordedRequest = {
      method: request.method ?? "GET",
      path,
      namespace,
      operation,
      hadToken: token !== undefined,
      at: Date.now(),
      status: 0,
    };
    this.requests.push(record);
    if (this.requests.length > MAX_RECORDED) this.requests.shift();
    this.counters.requests += 1;
    this.counters[operation] += 1;
    let status = 200;
    let payload: unknown;
    let headers: Record<string, string> = {};
    try {
      const body = await readBody(request);
      if (this.#delayMs > 0) await this.#wait(this.#delayMs);
      if (!url.pathname.startsWith("/v1/")) throw noHandler(url.pathname);
      if (this.#sealed) throw new VaultError(503, ["Vault is sealed"]);
      const fault = this.#faults.find(
        (candidate) =>
          candidate.remaining > 0 &&
          (candidate.operations === undefined || candidate.operations.includes(operation)),
      );
      if (fault !== undefined) {
        fault.remaining -= 1;
        throw new VaultError(fault.status, fault.errors, fault.headers);
      }
      const answer = this.#route(request.method ?? "GET", path, namespace ?? "", token, body);
      status = answer.status ?? 200;
      payload = answer.payload;
    } catch (error) {
      const failure =
        error instanceof VaultError
          ? error
          : new VaultError(500, [`1 error occurred:\n\t* ${(error as Error).message}\n\n`]);
      status = failure.status;
      payload = { errors: failure.errors };
      headers = failure.headers;
    }
    record.status = status;
    if (response.destroyed) return;
    const text = payload === undefined ? "" : JSON.stringify(payload);
    response.writeHead(status, {
      ...headers,
      ...(text !== "" && { "Content-Type": "application/json" }),
      "Cache-Control": "no-store",
      "Content-Length": Buffer.byteLength(text),
    });
    response.end(text);
  }

  #wait(milliseconds: number): Promise<void> {
    return new Promise((resolve) => {
      const waiting = {
        timer: setTimeout(() => {
          this.#waiting.delete(waiting);
          resolve();
        }, milliseconds),
        resolve,
      };
      this.#waiting.add(waiting);
    });
  }

  #route(
    method: string,
    path: string,
    namespace: string,
    token: string | undefined,
    body: Record<string, unknown>,
  ): { status?: number; payload: unknown } {
    if (!this.#namespaces.has(namespace)) throw noHandler(join(namespace, path));
    if (path === "sys/health" || path === "sys/seal-status") {
      return { payload: { initialized: true, sealed: false, standby: false, version: "1.17.0" } };
    }
    const login = /^(auth\/.+)\/login$/.exec(path);
    const loginMethod =
      login === null ? undefined : this.#logins.get(`${namespace}\u0000${login[1]}`);
    if (login !== null && loginMethod !== undefined && method === "POST") {
      const entry = this.#tokens.create({
        ...loginMethod.login(body, login[1] as string),
        namespace,
      });
      return { payload: envelope({ auth: this.#tokens.auth(entry, ttlOf(entry)) }) };
    }
    const entry = this.#tokens.find(token);
    if (entry === undefined) throw invalidToken(this.#flavor);
    const relative = relativeTo(entry.namespace, namespace);
    if (relative === undefined) throw invalidToken(this.#flavor);
    const allow = (aclPath: string, capability: Capability) => {
      const granted = this.#capabilities(entry, relative, aclPath);
      if (granted.includes("root")) return;
      if (granted.includes("deny") || !granted.includes(capability)) throw permissionDenied();
    };
    if (path === "auth/token/lookup-self" && method === "GET") {
      allow(path, "read");
      return { payload: envelope({ data: this.#tokens.lookup(entry) }) };
    }
    if (path === "auth/token/renew-self" && method === "POST") {
      allow(path, "update");
      const { ttl, warnings } = this.#tokens.renew(entry, seconds(body.increment));
      return { payload: envelope({ auth: this.#tokens.auth(entry, ttl), warnings }) };
    }
    if (path === "sys/capabilities-self" && method === "POST") {
      allow(path, "update");
      const paths = Array.isArray(body.paths) ? body.paths.map(String) : [String(body.path ?? "")];
      const data: Record<string, string[]> = {};
      for (const asked of paths) data[asked] = this.#capabilities(entry, relative, asked);
      if (paths.length === 1) data.capabilities = data[paths[0] as string] ?? [];
      return { payload: { ...data, ...envelope({ data }) } };
    }
    return this.#routeTransit(method, path, namespace, body, allow);
  }

  #routeTransit(
    method: string,
    path: string,
    namespace: string,
    body: Record<string, unknown>,
    allow: (aclPath: string, capability: Capability) => void,
  ): { status?: number; payload: unknown } {
    const mount = [...this.#transit.keys()]
      .filter((key) => key.startsWith(`${namespace}\u0000`))
      .map((key) => key.slice(namespace.length + 1))
      .filter((candidate) => path.startsWith(`${candidate}/`))
      .sort((a, b) => b.length - a.length)[0];
    if (mount === undefined) {
      allow(path, method === "GET" ? "read" : "update");
      throw noHandler(join(namespace, path));
    }
    const answer = transitRoute({
      method,
      path: path.slice(mount.length + 1),
      keys: this.#keys({ mount, namespace }),
      body,
      allow: (capability) => allow(path, capability),
      corrupt: () => {
        if (this.#corruptDecrypts === 0) return false;
        this.#corruptDecrypts -= 1;
        return true;
      },
    });
    return "data" in answer
      ? { payload: envelope({ data: answer.data }) }
      : { status: answer.status, payload: { errors: [] } };
  }

  #capabilities(entry: TokenEntry, relative: string, path: string): string[] {
    return this.#policies.capabilities(
      entry.namespace,
      entry.policies,
      relative === "" ? path : `${relative}/${path}`,
    );
  }
}

function zeroCounters(): Record<VaultOperation | "requests", number> {
  return {
    requests: 0,
    encrypt: 0,
    decrypt: 0,
    keys: 0,
    login: 0,
    lookup: 0,
    renew: 0,
    capabilities: 0,
    other: 0,
  };
}

function place(location: KeyLocation): { mount: string; namespace: string } {
  return { mount: location.mount ?? "transit", namespace: location.namespace ?? "" };
}

function operationOf(method: string, path: string): VaultOperation {
  if (path.endsWith("/login") && path.startsWith("auth/")) return "login";
  if (path === "auth/token/lookup-self") return "lookup";
  if (path === "auth/token/renew-self") return "renew";
  if (path === "sys/capabilities-self") return "capabilities";
  if (method === "POST" && /(^|\/)encrypt\/[^/]+$/.test(path)) return "encrypt";
  if (method === "POST" && /(^|\/)decrypt\/[^/]+$/.test(path)) return "decrypt";
  if (/(^|\/)keys\/[^/]+/.test(path)) return "keys";
  return "other";
}

function tokenOf(request: IncomingMessage): string | undefined {
  const header = request.headers["x-vault-token"];
  if (typeof header === "string" && header !== "") return header;
  const bearer = /^Bearer (.+)$/.exec(request.headers.authorization ?? "");
  return bearer?.[1];
}

// A token of namespace `owner` may act in `owner` and its children; paths in its policies are
// relative to `owner`, so a child's path is prefixed with the rest of the child's name.
function relativeTo(owner: string, namespace: string): string | undefined {
  if (owner === namespace) return "";
  if (owner === "") return namespace;
  return namespace.startsWith(`${owner}/`) ? namespace.slice(owner.length + 1) : undefined;
}

function ttlOf(entry: TokenEntry): number {
  return entry.expiresAt === undefined ? 0 : Math.round((entry.expiresAt - Date.now()) / 1000);
}

function seconds(value: unknown): number {
  if (typeof value === "number") return Math.max(0, Math.floor(value));
  const match = /^(\d+)(s|m|h)?$/.exec(String(value ?? ""));
  if (match === null) return 0;
  const unit = match[2] === "h" ? 3600 : match[2] === "m" ? 60 : 1;
  return Number(match[1]) * unit;
}

function envelope(parts: { data?: unknown; auth?: unknown; warnings?: string[] }) {
  return {
    request_id: randomUUID(),
    lease_id: "",
    renewable: false,
    lease_duration: 0,
    data: parts.data ?? null,
    wrap_info: null,
    warnings: parts.warnings === undefined || parts.warnings.length === 0 ? null : parts.warnings,
    auth: parts.auth ?? null,
  };
}

async function readBody(request: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new VaultError(413, ["request body too large"]);
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString("utf8");
  if (text.trim() === "") return {};
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed === "object" && parsed !== null && !Array.isArray(parsed))
      return parsed as Record<string, unknown>;
  } catch {
    // answered below
  }
  throw badRequest("failed to parse JSON input: invalid character");
}
