import { setTimeout as sleep } from "node:timers/promises";
import { status } from "@grpc/grpc-js";
import { abortable } from "./abortable.js";
import type { ClassifiedFailure } from "./gcp-errors.js";

/** How long one operation may take and how often it is tried. */
export interface RetryPolicy {
  /** Deadline of the operation, every attempt and back-off included. */
  timeoutMs: number;
  /** Attempts at most. */
  maxAttempts: number;
  /** First back-off step; later ones double (up to 2 s), with full jitter. */
  retryDelayMs: number;
}

/** The per-attempt options handed to the gax call: the time left, gax's own retry off. */
export interface AttemptCallOptions {
  timeout: number;
  retry: null;
}

const MAX_BACKOFF_MS = 2_000;

/**
 * Runs one operation with bounded, jittered retries under one deadline. gax's own retry is
 * switched off (`retry: null`): its default for Encrypt/Decrypt keeps retrying UNAVAILABLE for
 * up to 600 s (CLOUD-PROTOCOLS.md B.3), far beyond a health-check deadline. `classify` sees
 * every failed attempt and decides whether it is worth another.
 */
export async function withRetries<T>(
  policy: RetryPolicy,
  signal: AbortSignal | undefined,
  attempt: (callOptions: AttemptCallOptions) => Promise<T>,
  classify: (error: unknown, attempts: number) => ClassifiedFailure,
): Promise<T> {
  const deadline = Date.now() + policy.timeoutMs;
  for (let attempts = 1; ; attempts += 1) {
    const remaining = deadline - Date.now();
    try {
      if (signal?.aborted) throw signal.reason;
      if (remaining <= 0)
        throw Object.assign(new Error("deadline"), { code: status.DEADLINE_EXCEEDED });
      return await abortable(attempt({ timeout: remaining, retry: null }), signal);
    } catch (error) {
      const failure = classify(error, attempts);
      const backoff =
        Math.random() * Math.min(MAX_BACKOFF_MS, policy.retryDelayMs * 2 ** (attempts - 1));
      if (!failure.retry || attempts >= policy.maxAttempts || Date.now() + backoff >= deadline) {
        throw failure.error;
      }
      await sleep(backoff, undefined, { signal }).catch(() => {
        throw failure.error;
      });
    }
  }
}
