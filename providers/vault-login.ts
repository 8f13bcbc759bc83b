import { errorMessage } from "../src/errors.js";
import { ProviderError } from "./types.js";
import { networkFailure, serviceFailure } from "./vault-errors.js";
import { type VaultBody, type VaultHttp, type VaultReply, vaultErrors } from "./vault-http.js";
import { readSecret, type SecretSource, type VaultSettings } from "./vault-settings.js";

/** A token and what Vault said about its life. */
export interface Lease {
  readonly token: string;
  /** When Vault expires the token (epoch ms); undefined when it never does. */
  readonly expiresAt: number | undefined;
  readonly renewable: boolean;
  /** The TTL to ask for at each renewal: the one the token was issued with. */
  readonly incrementSeconds: number;
  /** A renewal came back shorter than asked: the token's max TTL is near, renewing is over. */
  readonly capped: boolean;
}

// A token this close to its expiry is not used: the request could arrive after it.
const EXPIRY_MARGIN_MS = 500;

/** Whether a lease's token is (about to be) expired. */
export function expired(lease: Lease): boolean {
  return lease.expiresAt !== undefined && Date.now() >= lease.expiresAt - EXPIRY_MARGIN_MS;
}

/**
 * How the provider gets a token, by the configured method: token auth reads `VAULT_TOKEN` or
 * its file and asks `lookup-self` for the token's TTL; AppRole and Kubernetes log in. Secrets in
 * files are read at every login, so rotated secrets (a new secret_id, the kubelet's next
 * service-account token, a Vault Agent's new sink token) are picked up without a restart.
 */
export class VaultLogin {
  readonly #http: VaultHttp;
  readonly #settings: VaultSettings;
  readonly #namespace: string;

  constructor(http: VaultHttp, settings: VaultSettings, namespace: string) {
    this.#http = http;
    this.#settings = settings;
    this.#namespace = namespace;
  }

  /** Whether another login can bring a different token (not for a token in the environment). */
  canLogInAgain(): boolean {
    const { auth } = this.#settings;
    return auth.method !== "token" || "file" in auth.token;
  }

  /** Obtains a token and its lease; refusals are `user` errors saying what to check. */
  async logIn(signal: AbortSignal): Promise<Lease> {
    const { auth } = this.#settings;
    const started = Date.now();
    switch (auth.method) {
      case "token":
        return this.#lookUp(readCredential(auth.token, "the Vault token"), started, signal);
      case "approle": {
        const body: Record<string, string> = {
          role_id: readCredential(auth.roleId, "the AppRole role_id"),
        };
        if (auth.secretId !== undefined)
          body.secret_id = readCredential(auth.secretId, "the AppRole secret_id");
        const reply = await this.send("POST", `auth/${auth.mount}/login`, undefined, body, signal);
        return this.#loggedIn(
          reply,
          started,
          `AppRole login at auth/${auth.mount}`,
          `check the role_id and secret_id (a secret_id expires or runs out of uses: issue a new one with vault write -f auth/${auth.mount}/role/<role>/secret-id)`,
        );
      }
      case "kubernetes": {
        const jwt = readCredential({ file: auth.jwtFile }, "the service-account token");
        const body = { role: auth.role, jwt };
        const reply = await this.send("POST", `auth/${auth.mount}/login`, undefined, body, signal);
        return this.#loggedIn(
          reply,
          started,
          `Kubernetes login at auth/${auth.mount} as role ${auth.role}`,
          "check that the role binds this pod's service account and namespace (bound_service_account_names, bound_service_account_namespaces) and that the auth method can review its token (kubernetes_host, CA)",
        );
      }
    }
  }

  /**
   * The error for a token that expired or that Vault refused, when no login can replace it,
   * with the remedy the auth method calls for; `lastRenewal` says why renewing failed, if it did.
   */
  deadTokenError(lease: Lease | undefined, lastRenewal: string | undefined): ProviderError {
    const { auth } = this.#settings;
    const when =
      lease?.expiresAt !== undefined && expired(lease)
        ? `expired at ${new Date(lease.expiresAt).toISOString()}`
        : "was refused by Vault (revoked, expired or mistyped)";
    const why = lastRenewal === undefined ? "" : ` (last renewal: ${lastRenewal})`;
    const remedy =
      auth.method === "token" && "file" in auth.token
        ? `write a valid token to ${auth.token.file} (it is re-read), e.g. from a Vault Agent sink`
        : auth.method === "token"
          ? "give the daemon a token it can renew, or one in VAULT_TOKEN_FILE (re-read, e.g. a Vault Agent sink), or use AppRole or Kubernetes auth, which log in again by themselves"
          : `check that ${auth.method} login still works`;
    return new ProviderError(
      "user",
      `the Vault token (from ${this.#tokenSource()}) ${when}${why}: ${remedy}`,
    );
  }

  /** A request in the auth namespace; no HTTP answer becomes a classified ProviderError. */
  async send(
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
    const reply = await this.send("GET", "auth/token/lookup-self", token, undefined, signal);
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
      throw this.deadTokenError(undefined, undefined);
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

  #tokenSource(): string {
    const { auth } = this.#settings;
    if (auth.method !== "token") return `${auth.method} login`;
    return "file" in auth.token ? auth.token.file : "VAULT_TOKEN";
  }
}

interface TokenData {
  ttl?: unknown;
  expire_time?: unknown;
  creation_ttl?: unknown;
  renewable?: unknown;
}

/** The `auth` block of a login or renewal answer: token, TTL and renewability. */
export function tokenAuth(
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

/** ` (HTTP 400: Vault's errors)`, for messages. */
export function describeReply(reply: VaultReply): string {
  const errors = vaultErrors(reply.body);
  return ` (HTTP ${reply.status}${errors.length > 0 ? `: ${errors.join("; ")}` : ""})`;
}

function wholeSeconds(value: unknown): number {
  return typeof value === "number" && Number.isFinite(value) && value > 0 ? Math.floor(value) : 0;
}

function readCredential(source: SecretSource, what: string): string {
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
