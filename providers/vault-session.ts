import { errorMessage } from "../src/errors.js";
import { abortable } from "./abortable.js";
import { type VaultBody, type VaultHttp, type VaultReply, vaultErrors } from "./vault-http.js";
import { describeReply, expired, type Lease, tokenAuth, VaultLogin } from "./vault-login.js";
import type { VaultSettings } from "./vault-settings.js";

/** How the session reaches Vault and what it may do. */
interface VaultSessionOptions {
  readonly http: VaultHttp;
  readonly settings: VaultSettings;
  /** Namespace of the key; the auth method's too unless the settings name another. */
  readonly keyNamespace: string;
  /** Deadline of one login or renewal, in ms. */
  readonly timeoutMs: number;
}

const MIN_REFRESH_DELAY_MS = 250;
const MAX_RETRY_DELAY_MS = 30_000;

/**
 * The provider's Vault token, kept valid without restarts: renewed (`renew-self`) at about two
 * thirds of its TTL, for as long as Vault extends it; once a renewal comes back capped by the
 * max TTL, or the token cannot be renewed, AppRole and Kubernetes auth log in again before it
 * expires, and token auth re-reads its file (a Vault Agent sink). A token Vault refuses (403,
 * revoked) is replaced the same way, once per refusal. A token that expires with no way to get
 * another fails every call with a message saying how to give the daemon one.
 */
export class VaultSession {
  readonly #login: VaultLogin;
  readonly #timeoutMs: number;
  #lease: Lease | undefined;
  /** The current token was refused (revoked) and nothing could replace it yet. */
  #refused = false;
  #pending: Promise<Lease> | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** Why the last background renewal or login failed, for the message once the token is dead. */
  #refreshProblem: string | undefined;
  #closed = false;

  constructor(options: VaultSessionOptions) {
    const namespace = options.settings.authNamespace ?? options.keyNamespace;
    this.#login = new VaultLogin(options.http, options.settings, namespace);
    this.#timeoutMs = options.timeoutMs;
  }

  /** A token valid now, logging in first when there is none yet or it expired. */
  async token(signal: AbortSignal): Promise<string> {
    const lease = this.#lease;
    if (lease !== undefined && !this.#refused && !expired(lease)) return lease.token;
    if (lease !== undefined && !this.#login.canLogInAgain()) throw this.#deadTokenError(lease);
    return (await this.#sharedLogin(signal)).token;
  }

  /**
   * Decides whether a 403 to `token` means the token is dead (expired, revoked): Vault 1.16+
   * says `invalid token`; otherwise `lookup-self` (which the default policy allows) tells.
   */
  async isDead(token: string, reply: VaultReply, signal: AbortSignal): Promise<boolean> {
    if (vaultErrors(reply.body).some((error) => /invalid token/.test(error))) return true;
    try {
      const lookup = await this.#login.send(
        "GET",
        "auth/token/lookup-self",
        token,
        undefined,
        signal,
      );
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
    if (!this.#login.canLogInAgain()) throw this.#deadTokenError(lease);
    const fresh = await this.#sharedLogin(signal);
    if (fresh.token === refused) throw this.#deadTokenError(fresh);
    return fresh.token;
  }

  /** Stops renewing; the token itself is left to expire (other processes may share it). */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#lease = undefined;
  }

  #deadTokenError(lease: Lease | undefined) {
    return this.#login.deadTokenError(lease, this.#refreshProblem);
  }

  // One login at a time, under its own deadline; every caller waits within its own.
  #sharedLogin(signal: AbortSignal): Promise<Lease> {
    if (this.#pending === undefined) {
      this.#pending = this.#login
        .logIn(AbortSignal.timeout(this.#timeoutMs))
        .then((lease) => {
          this.#adopt(lease);
          return lease;
        })
        .finally(() => {
          this.#pending = undefined;
        });
    }
    return abortable(this.#pending, signal);
  }

  #adopt(lease: Lease): void {
    if (this.#closed) return;
    this.#lease = lease;
    this.#refused = false;
    this.#refreshProblem = undefined;
    this.#schedule(lease, this.#refreshDelay(lease));
  }

  #schedule(lease: Lease, delayMs: number | undefined): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (delayMs === undefined || this.#closed) return;
    // Renewal must never keep a finished process alive.
    this.#timer = setTimeout(() => void this.#refresh(lease), delayMs);
    this.#timer.unref();
  }

  /**
   * When to act on a lease: at about two thirds of what is left (jittered, so daemons sharing a
   * role spread out), as Vault's own lifetime watcher does; never for a token that does not
   * expire, nor for one nothing can be done about.
   */
  #refreshDelay(lease: Lease): number | undefined {
    if (lease.expiresAt === undefined) return undefined;
    if (!(lease.renewable && !lease.capped) && !this.#login.canLogInAgain()) return undefined;
    const share = 0.6 + Math.random() * 0.1;
    return Math.max(MIN_REFRESH_DELAY_MS, (lease.expiresAt - Date.now()) * share);
  }

  async #refresh(lease: Lease): Promise<void> {
    if (this.#closed || this.#lease !== lease) return;
    const renewing = !this.#refused && lease.renewable && !lease.capped;
    if (!renewing && !this.#login.canLogInAgain()) return;
    const deadline = AbortSignal.timeout(this.#timeoutMs);
    try {
      if (renewing) {
        const renewed = await this.#renew(lease, deadline);
        if (this.#lease !== lease) return;
        this.#lease = renewed;
        this.#refreshProblem = undefined;
        this.#schedule(renewed, this.#refreshDelay(renewed));
      } else {
        await this.#sharedLogin(deadline);
      }
    } catch (error) {
      if (this.#lease !== lease) return;
      this.#refreshProblem = errorMessage(error);
      if (error instanceof DeadToken) {
        this.#refused = true;
        if (this.#login.canLogInAgain()) this.#schedule(lease, 0);
        return;
      }
      // A transient failure: try again well before the token runs out.
      const remaining =
        lease.expiresAt === undefined ? MAX_RETRY_DELAY_MS : lease.expiresAt - Date.now();
      if (remaining > 0) {
        this.#schedule(
          lease,
          Math.max(MIN_REFRESH_DELAY_MS, Math.min(remaining / 3, MAX_RETRY_DELAY_MS)),
        );
      }
    }
  }

  async #renew(lease: Lease, signal: AbortSignal): Promise<Lease> {
    const started = Date.now();
    const reply = await this.#login.send(
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
}

/** A token Vault refused during a background renewal. */
class DeadToken extends Error {}

function vaultWarnings(body: VaultBody | undefined): string[] {
  return Array.isArray(body?.warnings)
    ? body.warnings.filter((warning): warning is string => typeof warning === "string")
    : [];
}
