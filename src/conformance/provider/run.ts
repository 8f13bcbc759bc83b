import { randomBytes, timingSafeEqual } from "node:crypto";
import {
  type CustodyProvider,
  ProviderError,
  type ProviderErrorClass,
} from "../../../providers/types.js";
import { describeThrown, type Findings } from "../report.js";

/**
 * Faults the key service behind a provider can be put into (an emulator's controls, a
 * test provider's script). Each lasts until `restore`, which undoes all of them.
 */
export interface ProviderFaults {
  /** Every call is rate limited. */
  throttle?(): void | Promise<void>;
  /** The service is down (5xx / UNAVAILABLE). */
  outage?(): void | Promise<void>;
  /** Access to the key is revoked or the key is disabled. */
  revoke?(): void | Promise<void>;
  /** Every answer is held back this long. */
  delay?(milliseconds: number): void | Promise<void>;
  /** Back to normal service. */
  restore(): void | Promise<void>;
}

/** A custody provider under test and what its environment lets the suite do with it. */
export interface ProviderSubject {
  /** Shown in the report, e.g. `aws (emulator)` or `./my-hsm.js`. */
  label: string;
  /** A new provider instance for the key under test; the suite closes it. */
  open(): Promise<CustodyProvider>;
  /** A provider instance for another key of the same kind, for the wrong-key rule. */
  openOtherKey?(): Promise<CustodyProvider>;
  /** The per-call deadline the instances from `open` were given (ms). */
  timeoutMs?: number;
  /**
   * Whether a new instance for the same key unwraps what an earlier one wrapped, as a keyring
   * written yesterday needs. Only in-memory test providers say false. Default true.
   */
  durable?: boolean;
  /** Fault controls, where the key service can simulate them. */
  faults?: ProviderFaults;
}

/** Knobs of a provider run. */
export interface ProviderRunOptions {
  /** Unwraps in flight at once in the concurrency rule. Default 200. */
  concurrency?: number;
}

/** Shared state of one run: the subject, instances to close, and everything to scan for leaks. */
export class ProviderRun {
  readonly subject: ProviderSubject;
  readonly concurrency: number;
  /** Every key handed to or returned by the provider: none may appear in errors or output. */
  readonly secrets: Uint8Array[] = [];
  /** Every error the provider raised, for the no-secret rule. */
  readonly errors: unknown[] = [];
  /** Everything written to stdout/stderr while rules ran. */
  readonly output: string[] = [];
  readonly #open: CustodyProvider[] = [];

  constructor(subject: ProviderSubject, options: ProviderRunOptions = {}) {
    this.subject = subject;
    this.concurrency = options.concurrency ?? 200;
  }

  /** A new instance of the provider under test, closed when the run ends. */
  async provider(): Promise<CustodyProvider> {
    const provider = await this.subject.open();
    this.#open.push(provider);
    return provider;
  }

  /** A provider for another key, or undefined when the subject has none. */
  async otherKeyProvider(): Promise<CustodyProvider | undefined> {
    if (this.subject.openOtherKey === undefined) return undefined;
    const provider = await this.subject.openOtherKey();
    this.#open.push(provider);
    return provider;
  }

  /** A fresh random key, remembered as a secret. */
  newKey(length = 32): Uint8Array {
    const key = randomBytes(length);
    this.secrets.push(Uint8Array.from(key));
    return key;
  }

  /** Runs a provider call and reports how it ended, remembering errors and returned keys. */
  async attempt<T>(call: () => Promise<T>): Promise<Attempt<T>> {
    const started = performance.now();
    try {
      const value = await call();
      if (value instanceof Uint8Array) this.secrets.push(Uint8Array.from(value));
      return { ok: true, value, ms: Math.round(performance.now() - started) };
    } catch (error) {
      this.errors.push(error);
      return { ok: false, error, ms: Math.round(performance.now() - started) };
    }
  }

  /** Closes every instance the run opened and puts the key service back to normal. */
  async close(): Promise<void> {
    await this.subject.faults?.restore();
    await Promise.allSettled(this.#open.splice(0).map((provider) => provider.close()));
  }
}

/** How one provider call ended. */
export type Attempt<T> =
  | { ok: true; value: T; ms: number }
  | { ok: false; error: unknown; ms: number };

const CLASSES: readonly ProviderErrorClass[] = ["user", "throttled", "corrupt", "other"];
export const CONTEXT = { keyId: "conformance:key-id-0001" };

/** "user", "corrupt", … for a ProviderError; what was thrown otherwise. */
export function errorClassOf(error: unknown): string {
  if (error instanceof ProviderError) {
    return CLASSES.includes(error.errorClass)
      ? error.errorClass
      : `unknown class ${String(error.errorClass)}`;
  }
  return `not a ProviderError (${describeThrown(error)})`;
}

export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

// Describes an outcome for evidence: class and a bounded message. The only keys in play are
// random ones the run made, so quoting a provider's message never exposes a real master key.
export function seen<T>(attempt: Attempt<T>): string {
  if (attempt.ok) return `succeeded in ${attempt.ms} ms`;
  return `failed in ${attempt.ms} ms as ${errorClassOf(attempt.error)}: ${describeThrown(attempt.error)}`;
}

/** Wraps a fresh 32-byte key under CONTEXT with a new instance; undefined (and a failure) if it cannot. */
export async function wrapped(
  run: ProviderRun,
  findings: Findings,
): Promise<{ provider: CustodyProvider; key: Uint8Array; wrapped: Uint8Array } | undefined> {
  const provider = await run.provider();
  const key = run.newKey(32);
  const attempt = await run.attempt(() => provider.wrapKey(key, CONTEXT));
  if (!attempt.ok) {
    findings.fail(`wrapKey of a 32-byte key ${seen(attempt)}`);
    return undefined;
  }
  return { provider, key, wrapped: attempt.value };
}
