import { setTimeout as sleep } from "node:timers/promises";
import { ProviderError, type ProviderErrorClass } from "./types.js";
import {
  deniedFailure,
  isRetryable,
  type KeyFacts,
  networkFailure,
  policyPath,
  type TransitOperation,
  transitFailure,
} from "./vault-errors.js";
import type { VaultBody, VaultHttp, VaultReply } from "./vault-http.js";
import type { VaultSession } from "./vault-session.js";

/** A call's deadline: its own timeout, the caller's signal, and either. */
export interface Deadline {
  readonly timeout: AbortSignal;
  readonly caller: AbortSignal | undefined;
  readonly signal: AbortSignal;
}

/** What one call has seen across its attempts. */
interface Seen {
  lastStatus: number | undefined;
  /** A dead token was already replaced once in this call. */
  replaced: boolean;
}

type Outcome = { body: VaultBody } | { retry: ProviderError; waitMs: number | undefined };

/**
 * Transit encrypt and decrypt calls with the provider's token, deadline and retry policy, each
 * failure classified into what an operator must do.
 */
export class TransitCalls {
  readonly #http: VaultHttp;
  readonly #session: VaultSession;
  readonly #facts: KeyFacts;
  readonly #timeoutMs: number;
  readonly #maxAttempts: number;
  readonly #onAttemptFailed: ((errorClass: ProviderErrorClass) => void) | undefined;

  constructor(options: {
    http: VaultHttp;
    session: VaultSession;
    facts: KeyFacts;
    timeoutMs: number;
    maxAttempts: number;
    onAttemptFailed: ((errorClass: ProviderErrorClass) => void) | undefined;
  }) {
    this.#http = options.http;
    this.#session = options.session;
    this.#facts = options.facts;
    this.#timeoutMs = options.timeoutMs;
    this.#maxAttempts = options.maxAttempts;
    this.#onAttemptFailed = options.onAttemptFailed;
  }

  /** A new deadline for one provider call, bounded by the caller's signal too. */
  deadline(signal: AbortSignal | undefined): Deadline {
    const timeout = AbortSignal.timeout(this.#timeoutMs);
    return {
      timeout,
      caller: signal,
      signal: signal === undefined ? timeout : AbortSignal.any([timeout, signal]),
    };
  }

  /**
   * One Transit call: retries 412, 429, 5xx and network failures with jittered backoff within
   * the deadline; a 403 whose token turns out dead is answered by one new login and one more
   * try; any other 403 is diagnosed (capabilities-self) into the policy line to add.
   */
  async call(
    operation: TransitOperation,
    payload: Record<string, unknown>,
    deadline: Deadline,
    ciphertext?: string,
  ): Promise<VaultBody> {
    const { signal } = deadline;
    const seen: Seen = { lastStatus: undefined, replaced: false };
    let attempts = 0;
    for (;;) {
      attempts += 1;
      let outcome: Outcome;
      try {
        outcome = await this.#attempt(operation, payload, signal, seen, ciphertext);
      } catch (error) {
        if (!signal.aborted) {
          if (error instanceof ProviderError) this.#onAttemptFailed?.(error.errorClass);
          throw error;
        }
        this.#onAttemptFailed?.(seen.lastStatus === 429 ? "throttled" : "other");
        throw this.#abortFailure(operation, deadline, attempts, seen.lastStatus, error);
      }
      if ("body" in outcome) return outcome.body;
      this.#onAttemptFailed?.(outcome.retry.errorClass);
      if (attempts >= this.#maxAttempts) throw outcome.retry;
      try {
        await sleep(backoff(attempts, outcome.waitMs), undefined, { signal });
      } catch (error) {
        throw this.#abortFailure(operation, deadline, attempts, seen.lastStatus, error);
      }
    }
  }

  // One try (plus one more after replacing a dead token): the body, a failure worth retrying,
  // or a thrown final failure.
  async #attempt(
    operation: TransitOperation,
    payload: Record<string, unknown>,
    signal: AbortSignal,
    seen: Seen,
    ciphertext: string | undefined,
  ): Promise<Outcome> {
    let token: string;
    try {
      token = await this.#session.token(signal);
    } catch (error) {
      // A login that failed for want of Vault (down, sealed, throttled) is worth another try.
      if (error instanceof ProviderError && error.errorClass !== "user" && !signal.aborted)
        return { retry: error, waitMs: undefined };
      throw error;
    }
    const reply = await this.#send(operation, token, payload, signal);
    if (reply instanceof ProviderError) return { retry: reply, waitMs: undefined };
    seen.lastStatus = reply.status;
    if (reply.status === 200 && reply.body !== undefined) return { body: reply.body };
    if (reply.status === 403) {
      if (!seen.replaced && (await this.#session.isDead(token, reply, signal))) {
        seen.replaced = true;
        await this.#session.replace(token, signal);
        return this.#attempt(operation, payload, signal, seen, ciphertext);
      }
      throw deniedFailure(
        operation,
        this.#facts,
        await this.#capabilities(operation, token, signal),
      );
    }
    const failure = transitFailure(operation, reply, this.#facts, ciphertext);
    if (!isRetryable(reply.status)) throw failure;
    return { retry: failure, waitMs: reply.retryAfterMs };
  }

  async #send(
    operation: TransitOperation,
    token: string,
    payload: Record<string, unknown>,
    signal: AbortSignal,
  ): Promise<VaultReply | ProviderError> {
    try {
      return await this.#http.send({
        method: "POST",
        path: policyPath(this.#facts.key, operation),
        token,
        namespace: this.#facts.key.namespace,
        body: payload,
        signal,
      });
    } catch (error) {
      if (signal.aborted) throw error;
      const failure = networkFailure(error, `Transit ${operation}`, this.#facts.address);
      // An untrusted certificate stays untrusted: only outages are worth another attempt.
      if (failure.errorClass === "user") throw failure;
      return failure;
    }
  }

  // What the token may do on the path (sys/capabilities-self, allowed by the default policy);
  // undefined when Vault will not say.
  async #capabilities(
    operation: TransitOperation,
    token: string,
    signal: AbortSignal,
  ): Promise<string[] | undefined> {
    const path = policyPath(this.#facts.key, operation);
    try {
      const reply = await this.#http.send({
        method: "POST",
        path: "sys/capabilities-self",
        token,
        namespace: this.#facts.key.namespace,
        body: { paths: [path] },
        signal,
      });
      if (reply.status !== 200) return undefined;
      const body = reply.body as (VaultBody & Record<string, unknown>) | undefined;
      const found = (body?.data as Record<string, unknown> | undefined)?.[path] ?? body?.[path];
      return Array.isArray(found) ? found.filter((item) => typeof item === "string") : undefined;
    } catch {
      return undefined;
    }
  }

  #abortFailure(
    operation: TransitOperation,
    deadline: Deadline,
    attempts: number,
    lastStatus: number | undefined,
    cause: unknown,
  ): ProviderError {
    const where = `Vault Transit ${operation} with ${this.#facts.key.keyRef}`;
    if (deadline.caller?.aborted === true && !deadline.timeout.aborted)
      return new ProviderError("other", `${where} was cancelled by the caller`, { cause });
    const tries = `${attempts} attempt${attempts === 1 ? "" : "s"}`;
    if (lastStatus === 429) {
      return new ProviderError(
        "throttled",
        `Vault kept rate-limiting ${where} for ${this.#timeoutMs} ms (${tries}): raise the rate limit quota that applies, or look for other clients sharing it`,
        { cause },
      );
    }
    return new ProviderError(
      "other",
      `${where} did not complete within ${this.#timeoutMs} ms (${tries}): check network access to ${this.#facts.address} and Vault's health, or raise --provider-timeout`,
      { cause },
    );
  }
}

function backoff(attempt: number, retryAfterMs: number | undefined): number {
  const exponential = Math.min(2000, 100 * 2 ** (attempt - 1));
  const jittered = exponential / 2 + Math.random() * (exponential / 2);
  return retryAfterMs === undefined ? jittered : Math.min(Math.max(retryAfterMs, jittered), 5000);
}
