import { errorMessage } from "../src/errors.js";
import { ProviderError } from "./types.js";
import { networkFailure, serviceFailure } from "./vault-errors.js";
import { type VaultBody, type VaultHttp, type VaultReply, vaultErrors } from "./vault-http.js";
import { readSecret, type SecretSource, type VaultSettings } from "./vault-settings.js";

/** A token and what Vault said about its life. */
interface Lease {
  readonly token: string;
  /** When Vault expires the token (epoch ms); undefined when it never does. */
  readonly expiresAt: number | undefined;
  readonly renewable: boolean;
  /** The TTL to ask for at each renewal: the one the token was issued with. */
  readonly incrementSeconds: number;
  /** A renewal came back shorter than asked: the token's max TTL is near, renewing is over. */
  readonly capped: boolean;
}

/** How the session reaches Vault and what it may do. */
interface VaultSessionOptions {
  readonly http: VaultHttp;
  readonly settings: VaultSettings;
  /** Namespace of the key; the auth method's too unless the settings name another. */
  readonly keyNamespace: string;
  /** Deadline of one login or renewal, in ms. */
  readonly timeoutMs: number;
}

// A token this close to its expiry is not used: the request could arrive after it.
const EXPIRY_MARGIN_MS = 500;
const MIN_REFRESH_DELAY_MS = 250;
const MAX_RETRY_DELAY_MS = 30_000;

/**
 * The daemon's Vault token, kept valid without restarts: renewed (`renew-self`) at about two
 * thirds of its TTL, for as long as Vault extends it; once a renewal comes back capped by the
 * max TTL, or the token cannot be renewed, AppRole and Kubernetes auth log in again before it
 * expires, and token auth re-reads its file (a Vault Agent sink). A token Vault refuses (403,
 * revoked) is replaced the same way, once per refusal. A token that expires with no way to get
 * another fails every call with a message saying how to give the daemon one.
 */
export class VaultSession {
  readonly #http: VaultHttp;
  readonly #settings: VaultSettings;
  readonly #namespace: string;
  readonly #timeoutMs: number;
  #lease: Lease | undefined;
  /** The current token was refused (revoked) and nothing could replace it. */
  #refused = false;
  #login: Promise<Lease> | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** Why the last background renewal or login failed, for the message once the token expires. */
  #refreshProblem: string | undefined;
  #closed = false;

  constructor(options: VaultSessionOptions) {
    this.#http = options.http;
    this.#settings = options.settings;
    this.#namespace = options.settings.authNamespace ?? options.keyNamespace;
    this.#timeoutMs = options.timeoutMs;
  }

  /** A token valid now, logging in first when there is none yet or it expired. */
  async token(signal: AbortSignal): Promise<string> {
    const lease = this.#lease;
    if (lease !== undefined && !this.#refused && !expired(lease)) return lease.token;
    if (lease !== undefined && !this.#canLogInAgain()) throw this.#deadTokenError(lease);
    return (await this.#sharedLogin(signal)).token;
  }

  /**
   * Decides whether a 403 to `token` means the token is dead (expired, revoked): Vault 1.16+
   * says `invalid token`; otherwise `lookup-self` (which the default policy allows) tells.
   */
  async isDead(token: string, reply: VaultReply, signal: AbortSignal): Promise<boolean> {
    if (vaultErrors(reply.body).some((error) => /invalid token/.test(error))) return true;
    try {
      const lookup = await this.#send("GET", "auth/token/lookup-self", token, undefined, signal);
      return lookup.status === 403;
    } catch {
      return false;
    }
  }

  /**
   * Replaces a token Vault refused, unless another call already did: logs in again, or fails
   * with what to fix when the method cannot (a token from the environment, an unchanged file).
   */
  async replace(refused: string, signal: AbortSignal): Promise<string> {
    const lease = this.#lease;
    if (lease !== undefined && lease.token !== refused && !this.#refused) return lease.token;
    if (lease?.token === refused) this.#refused = true;
    if (!this.#canLogInAgain()) throw this.#deadTokenError(lease);
    const fresh = await this.#sharedLogin(signal);
    if (fresh.token === refused) throw this.#deadTokenError(fresh);
    return fresh.token;
  }

  /** Stops renewing; the token itself is left to expire (other daemons may share it). */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#lease = undefined;
  }

  #canLogInAgain(): boolean {
    const { auth } = this.#settings;
    return auth.method !== "token" || "file" in auth.token;
  }

  // One login at a time; every caller waits for it within its own deadline.
  #sharedLogin(signal: AbortSignal): Promise<Lease> {
    if (this.#login === undefined) {
      const deadline = AbortSignal.timeout(this.#timeoutMs);
      this.#login = this.#logIn(deadline)
        .then((lease) => {
          this.#adopt(lease);
          return lease;
        })
        .finally(() => {
          this.#login = undefined;
        });
    }
    return abortable(this.#login, signal);
  }

  #adopt(lease: Lease): void {
    if (this.#closed) return;
    this.#lease = lease;
    this.#refused = false;
    this.#refreshProblem = undefined;
    this.#schedule(lease, refreshDelay(lease, this.#canLogInAgain()));
  }

  #schedule(lease: Lease, delayMs: number | undefined): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (delayMs === undefined || this.#closed) return;
    // Renewal must never keep a finished process alive.
    this.#timer = setTimeout(() => void this.#refresh(lease), delayMs);
    this.#timer.unref();
  }

  async #refresh(lease: Lease): Promise<void> {
    if (this.#closed || this.#lease !== lease) return;
    const renewing = !this.#refused && lease.renewable && !lease.capped;
    if (!renewing && !this.#canLogInAgain()) return;
    const deadline = AbortSignal.timeout(this.#timeoutMs);
    try {
      if (renewing) {
        const renewed = await this.#renew(lease, deadline);
        if (this.#lease !== lease) return;
        this.#lease = renewed;
        this.#refreshProblem = undefined;
        this.#schedule(renewed, refreshDelay(renewed, this.#canLogInAgain()));
      } else {
        await this.#sharedLogin(deadline);
      }
    } catch (error) {
      if (this.#lease !== lease) return;
      this.#refreshProblem = errorMessage(error);
      if (error instanceof DeadToken) {
        this.#refused = true;
        if (this.#canLogInAgain()) this.#schedule(lease, 0);
        return;
      }
      // A transient failure: try again well before the token runs out.
      const remaining =
        lease.expiresAt === undefined ? MAX_RETRY_DELAY_MS : lease.expiresAt - now();
      if (remaining > 0) {
        this.#schedule(
          lease,
          Math.max(MIN_REFRESH_DELAY_MS, Math.min(remaining / 3, MAX_RETRY_DELAY_MS)),
        );
      }
    }
  }

  async #renew(lease: Lease, signal: AbortSignal): Promise<Lease> {
    const started = now();
    const reply = await this.#send(
      "POST",
      "auth/token/renew-self",
      lease.token,
      { increment: `${lease.incrementSeconds}s` },
      signal,
    );
    if (reply.status === 403) throw new DeadToken("Vault refused to renew the token (403)");
    // A token Vault will not renew (batch, renewable=false) is kept until a login replaces it.
    if (reply.status === 400) return { ...lease, capped: true };
    const auth = reply.status === 200 ? tokenAuth(reply.body) : undefined;
    if (auth === undefined) {
      throw new Error(`Vault did not renew the token${describeReply(reply)}`);
    }
    // Vault grants exactly the increment unless the token's max TTL caps it (and then warns);
    // a renewal worth 0 seconds means the token is at its end, not that it never expires.
    return {
      ...lease,
      expiresAt: started + auth.ttlSeconds * 1000,
      renewable: auth.renewable,
      capped:
        auth.ttlSeconds < lease.incrementSeconds ||
        vaultWarnings(reply.body).some((warning) => /capped/.test(warning)),
    };
  }

  async #logIn(signal: AbortSignal): Promise<Lease> {
    const { auth } = this.#settings;
    const started = now();
    switch (auth.method) {
      case "token": {
        const token = this.#readCredential(auth.token, "the Vault token");
        return this.#lookUp(token, started, signal);
      }
      case "approle": {
        const body: Record<string, string> = {
          role_id: this.#readCredential(auth.roleId, "the AppRole role_id"),
        };
        if (auth.secretId !== undefined)
          body.secret_id = this.#readCredential(auth.secretId, "the AppRole secret_id");
        const reply = await this.#send("POST", `auth/${auth.mount}/login`, undefined, body, signal);
        return this.#loggedIn(
          reply,
          started,
          `AppRole login at auth/${auth.mount}`,
          `check the role_id and secret_id (a secret_id expires or runs out of uses: issue a new one with vault write -f auth/${auth.mount}/role/<role>/secret-id)`,
        );
      }
      case "kubernetes": {
        const jwt = this.#readCredential({ file: auth.jwtFile }, "the service-account token");
        const reply = await this.#send(
          "POST",
          `auth/${auth.mount}/login`,
          undefined,
          { role: auth.role, jwt },
          signal,
        );
        return this.#loggedIn(
          reply,
          started,
          `Kubernetes login at auth/${auth.mount} as role ${auth.role}`,
          `check that the role binds this pod's service account and namespace (bound_service_account_names, bound_service_account_namespaces) and that the auth method can review its token (kubernetes_host, CA)`,
        );
      }
    }
  }

  #loggedIn(reply: VaultReply, started: number, what: string, advice: string): Lease {
    const auth = reply.status === 200 ? tokenAuth(reply.body) : undefined;
    if (auth !== undefined && auth.token !== undefined) {
      return {
        token: auth.token,
        expiresAt: auth.ttlSeconds === 0 ? undefined : started + auth.ttlSeconds * 1000,
        renewable: auth.renewable,
        incrementSeconds: auth.ttlSeconds,
        capped: false,
      };
    }
    if (reply.status === 400 || reply.status === 403) {
      throw new ProviderError(
        "user",
        `Vault refused the ${what}${describeReply(reply)}: ${advice}`,
      );
    }
    throw serviceFailure(`the ${what}`, reply, this.#http.address);
  }

  // Token auth: what Vault says about the token (TTL, renewable), via lookup-self.
  async #lookUp(token: string, started: number, signal: AbortSignal): Promise<Lease> {
    const reply = await this.#send("GET", "auth/token/lookup-self", token, undefined, signal);
    const data = reply.status === 200 ? (reply.body?.data as TokenData | undefined) : undefined;
    if (data !== undefined && data !== null) {
      const ttlSeconds = wholeSeconds(data.ttl);
      // ttl is whole seconds, rounded down: a token in its last second says 0, as a token
      // without expiry does; expire_time tells them apart.
      const expireTime = typeof data.expire_time === "string" ? Date.parse(data.expire_time) : NaN;
      return {
        token,
        expiresAt:
          ttlSeconds > 0
            ? started + ttlSeconds * 1000
            : Number.isFinite(expireTime)
              ? expireTime
              : undefined,
        renewable: data.renewable === true,
        incrementSeconds: wholeSeconds(data.creation_ttl) || ttlSeconds,
        capped: false,
      };
    }
    if (reply.status === 403 && vaultErrors(reply.body).some((e) => /invalid token/.test(e))) {
      throw this.#deadTokenError(undefined);
    }
    if (reply.status === 403) {
      // OpenBao and older Vault say only "permission denied" for a dead token too; a token
      // whose policies leave out lookup-self is still usable, its lease just unknown.
      return { token, expiresAt: undefined, renewable: false, incrementSeconds: 0, capped: false };
    }
    throw serviceFailure(
      `the lookup of the token from ${this.#tokenSource()}`,
      reply,
      this.#http.address,
    );
  }

  #readCredential(source: SecretSource, what: string): string {
    let value: string;
    try {
      value = readSecret(source);
    } catch (error) {
      const file = "file" in source ? source.file : "";
      throw new ProviderError(
        "user",
        `cannot read ${what} from ${file} (${(error as { code?: string }).code ?? errorMessage(error)}): mount it there, or point the provider's variable at where it is`,
        { cause: error },
      );
    }
    if (value === "") {
      throw new ProviderError(
        "user",
        `${what} in ${"file" in source ? source.file : "the environment"} is empty: give a non-empty value`,
      );
    }
    return value;
  }

  #tokenSource(): string {
    const { auth } = this.#settings;
    if (auth.method !== "token") return `${auth.method} login`;
    return "file" in auth.token ? auth.token.file : "VAULT_TOKEN";
  }

  #deadTokenError(lease: Lease | undefined): ProviderError {
    const { auth } = this.#settings;
    const when =
      lease?.expiresAt !== undefined && expired(lease)
        ? `expired at ${new Date(lease.expiresAt).toISOString()}`
        : "was refused by Vault (revoked, expired or mistyped)";
    const why =
      this.#refreshProblem === undefined ? "" : ` (last renewal: ${this.#refreshProblem})`;
    const remedy =
      auth.method === "token" && "file" in auth.token
        ? `write a valid token to ${auth.token.file} (it is re-read), e.g. from a Vault Agent sink`
        : auth.method === "token"
          ? "give the daemon a token it can renew, or one in KMS_ENVELOPE_VAULT_TOKEN_FILE (re-read, e.g. a Vault Agent sink), or use AppRole or Kubernetes auth, which log in again by themselves"
          : `check that ${auth.method} login still works`;
    return new ProviderError(
      "user",
      `the Vault token (from ${this.#tokenSource()}) ${when}${why}: ${remedy}`,
    );
  }

  async #send(
    method: "GET" | "POST",
    path: string,
    token: string | undefined,
    body: Record<string, unknown> | undefined,
    signal: AbortSignal,
  ): Promise<VaultReply> {
    try {
      return await this.#http.send({
        method,
        path,
        token,
        namespace: this.#namespace,
        body,
        signal,
      });
    } catch (error) {
      throw networkFailure(error, path, this.#http.address);
    }
  }
}

/** A token Vault refused during a background renewal. */
class DeadToken extends Error {}

interface TokenData {
  ttl?: unknown;
  expire_time?: unknown;
  creation_ttl?: unknown;
  renewable?: unknown;
}

function tokenAuth(
  body: VaultBody | undefined,
): { token: string | undefined; ttlSeconds: number; renewable: boolean } | undefined {
  const auth = body?.auth as
    | { client_token?: unknown; lease_duration?: unknown; renewable?: unknown }
    | undefined
    | null;
  if (auth === undefined || auth === null || typeof auth !== "object") return undefined;
  return {
    token:
      typeof auth.client_token === "string" && auth.client_token !== ""
        ? auth.client_token
        : undefined,
    ttlSeconds: wholeSeconds(auth.lease_duration),
    renewable: auth.renewable === true,
  };
}

function vaultWarnings(body: VaultBody | undefined): string[] {
  return Array.isArray(body?.warnings)
    ? body.warnings.filter((warning): warning is string => typeof warning === "string")
    : [];
}

function wholeSeconds(value: unknown): number {
  return typeof value === "number" && Number.isFinite(value) && value > 0 ? Math.floor(value) : 0;
}

function describeReply(reply: VaultReply): string {
  const errors = vaultErrors(reply.body);
  return ` (HTTP ${reply.status}${errors.length > 0 ? `: ${errors.join("; ")}` : ""})`;
}

function now(): number {
  return Date.now();
}

function expired(lease: Lease): boolean {
  return lease.expiresAt !== undefined && now() >= lease.expiresAt - EXPIRY_MARGIN_MS;
}

/**
 * When to act on a lease: at about two thirds of what is left (with jitter, so daemons sharing
 * a role spread out), as Vault's own lifetime watcher does; never for a token that does not
 * expire, nor for one nothing can be done about.
 */
function refreshDelay(lease: Lease, canLogInAgain: boolean): number | undefined {
  if (lease.expiresAt === undefined) return undefined;
  if (!(lease.renewable && !lease.capped) && !canLogInAgain) return undefined;
  const remaining = lease.expiresAt - now();
  const share = 0.6 + Math.random() * 0.1;
  return Math.max(MIN_REFRESH_DELAY_MS, remaining * share);
}

function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}
