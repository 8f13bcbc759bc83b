import { randomUUID } from "node:crypto";
import type { KeyClientOptions, UnwrapKeyOptions } from "@azure/keyvault-keys";
import type { ProviderError, ProviderErrorClass } from "./types.js";

/** The options every SDK request of one provider call carries (deadline, call id, hooks). */
export type CallOptions = UnwrapKeyOptions;

/** What one provider call has seen of its HTTP attempts. */
export interface CallState {
  operation: string;
  attempts: number;
  lastStatus: number | undefined;
  /** The `kid` a key operation's answer named. */
  kid: string | undefined;
}

/** How the deadline or the caller cut a call short, if they did. */
export interface CallAbort {
  timedOut: boolean;
  cancelled: boolean;
}

/** Classifies a call's (or one attempt's) failure from the error and what the call saw. */
type ClassifyCall = (error: unknown, state: CallState, abort: CallAbort) => ProviderError;

type Policy = NonNullable<KeyClientOptions["additionalPolicies"]>[number]["policy"];
type PipelineResponse = Awaited<ReturnType<Policy["sendRequest"]>>;

const CALL_ID_HEADER = "x-ms-client-request-id";

/**
 * The provider's calls in flight. Each call gets one deadline and an id that every HTTP attempt
 * carries, so the attempt observer (a pipeline policy placed after the retry policy) can record
 * in the call's state how many attempts were made and how the last one was answered: a timeout
 * spent waiting out 429s is then reported as throttling, messages can say how many attempts
 * were made, and every failed attempt, retried or not, reaches `onAttemptFailed`.
 */
export class KeyVaultCalls {
  readonly #calls = new Map<string, CallState>();
  readonly #timeoutMs: number;
  readonly #classify: ClassifyCall;
  readonly #onAttemptFailed: ((errorClass: ProviderErrorClass) => void) | undefined;

  constructor(
    timeoutMs: number,
    classify: ClassifyCall,
    onAttemptFailed: ((errorClass: ProviderErrorClass) => void) | undefined,
  ) {
    this.#timeoutMs = timeoutMs;
    this.#classify = classify;
    this.#onAttemptFailed = onAttemptFailed;
  }

  /** Runs one call under the deadline (and the caller's signal); a failure is classified. */
  async run<T>(
    operation: string,
    signal: AbortSignal | undefined,
    run: (options: CallOptions, state: CallState) => Promise<T>,
  ): Promise<T> {
    const callId = randomUUID();
    const state: CallState = { operation, attempts: 0, lastStatus: undefined, kid: undefined };
    const timeout = new AbortController();
    const timer = setTimeout(() => timeout.abort(), this.#timeoutMs);
    timer.unref();
    this.#calls.set(callId, state);
    const options: CallOptions = {
      abortSignal:
        signal === undefined ? timeout.signal : AbortSignal.any([signal, timeout.signal]),
      requestOptions: { headers: { [CALL_ID_HEADER]: callId } },
      onResponse: (response) => {
        const body = response.parsedBody as { kid?: unknown } | undefined;
        if (response.request.method === "POST" && typeof body?.kid === "string")
          state.kid = body.kid;
      },
    };
    try {
      return await run(options, state);
    } catch (error) {
      throw this.#classify(error, state, {
        timedOut: timeout.signal.aborted,
        cancelled: signal?.aborted === true,
      });
    } finally {
      clearTimeout(timer);
      this.#calls.delete(callId);
    }
  }

  /** The attempt observer, for the Key Vault client's pipeline (position perRetry). */
  observer(): Policy {
    return {
      name: "kmsEnvelopeAttemptObserver",
      sendRequest: async (request, next) => {
        const state = this.#calls.get(request.headers.get(CALL_ID_HEADER) ?? "");
        if (state !== undefined) state.attempts += 1;
        let response: PipelineResponse;
        try {
          response = await next(request);
        } catch (error) {
          if (state !== undefined) this.#attemptFailed(error, state);
          throw error;
        }
        if (state !== undefined) {
          state.lastStatus = response.status;
          // The bearer challenge's first, unauthenticated request is answered 401 by design,
          // and a key read refused 403 is an optional check skipped (no `get` permission),
          // which the provider's own read and the SDK's first-use read both meet.
          const refusedRead = request.method === "GET" && response.status === 403;
          if (response.status >= 300 && request.headers.has("authorization") && !refusedRead)
            this.#attemptFailed(responseError(response), state);
        }
        return response;
      },
    };
  }

  /** Forgets the calls in flight. */
  clear(): void {
    this.#calls.clear();
  }

  // One attempt is classified by its own failure, as the call would be: 429 throttled, 5xx and
  // network other, 401/403/404 user, 400 on unwrap corrupt; one cut short by the deadline or
  // the caller is other.
  #attemptFailed(error: unknown, state: CallState): void {
    this.#onAttemptFailed?.(
      this.#classify(error, state, { timedOut: false, cancelled: false }).errorClass,
    );
  }
}

// The RestError the SDK will make of a failed response (status, Key Vault's error code and
// message), built early so one attempt is classified before the retry policy sees it.
function responseError(response: PipelineResponse): Error {
  let details: { error?: { code?: unknown; message?: unknown } } | undefined;
  try {
    details = JSON.parse(response.bodyAsText ?? "");
  } catch {
    details = undefined;
  }
  const { code, message } = details?.error ?? {};
  return Object.assign(
    new Error(typeof message === "string" ? message : `HTTP ${response.status}`),
    {
      name: "RestError",
      statusCode: response.status,
      code: typeof code === "string" ? code : undefined,
      details,
    },
  );
}
