import { randomBytes, timingSafeEqual } from "node:crypto";
import {
  type CustodyProvider,
  ProviderError,
  type ProviderErrorClass,
} from "../../providers/types.js";
import { KmsEnvelopeError } from "../errors.js";
import {
  buildReport,
  type ConformanceReport,
  describeThrown,
  Findings,
  type Rule,
  type RuleResult,
  runRule,
  skipped,
} from "./report.js";
import { captureOutput, exposedText, findSecret } from "./secret-scan.js";

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
const PROVIDER_NAME = /^[a-z][a-z0-9-]{0,31}$/;
const ROUND_TRIP_SIZES = [16, 24, 32, 48, 64] as const;
const CONTEXT = { keyId: "conformance:key-id-0001" };
const OTHER_CONTEXT = { keyId: "conformance:key-id-0002" };

/** "user", "corrupt", … for a ProviderError; what was thrown otherwise. */
export function errorClassOf(error: unknown): string {
  if (error instanceof ProviderError) {
    return CLASSES.includes(error.errorClass)
      ? error.errorClass
      : `unknown class ${String(error.errorClass)}`;
  }
  return `not a ProviderError (${describeThrown(error)})`;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

// Describes an outcome for evidence: class and a bounded message. The only keys in play are
// random ones the run made, so quoting a provider's message never exposes a real master key.
function seen<T>(attempt: Attempt<T>): string {
  if (attempt.ok) return `succeeded in ${attempt.ms} ms`;
  return `failed in ${attempt.ms} ms as ${errorClassOf(attempt.error)}: ${describeThrown(attempt.error)}`;
}

/** Wraps a fresh 32-byte key under CONTEXT with a new instance; undefined (and a failure) if it cannot. */
async function wrapped(
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

// A fault rule: checkHealth (and an unwrap) under the fault, then recovery after restore.
function faultRule(
  id: string,
  title: string,
  fault: "throttle" | "outage" | "revoke",
  expected: ProviderErrorClass,
): Rule<ProviderRun> {
  return {
    id,
    title,
    async check(run) {
      const apply = run.subject.faults?.[fault];
      if (apply === undefined || run.subject.faults === undefined) {
        return skipped(
          `the key service behind ${run.subject.label} cannot simulate ${fault === "outage" ? "an outage" : fault === "throttle" ? "throttling" : "revocation"}`,
        );
      }
      const findings = new Findings();
      const setup = await wrapped(run, findings);
      if (setup === undefined) return findings.outcome();
      await apply.call(run.subject.faults);
      try {
        const health = await run.attempt(() => setup.provider.checkHealth());
        if (health.ok) findings.fail(`checkHealth under ${fault} succeeded`);
        else
          findings.expect(
            errorClassOf(health.error) === expected,
            `checkHealth under ${fault} ${seen(health)} (expected ${expected})`,
          );
        const unwrap = await run.attempt(() => setup.provider.unwrapKey(setup.wrapped, CONTEXT));
        if (unwrap.ok) findings.fail(`unwrapKey under ${fault} succeeded`);
        else
          findings.expect(
            errorClassOf(unwrap.error) === expected,
            `unwrapKey under ${fault} ${seen(unwrap)} (expected ${expected})`,
          );
      } finally {
        await run.subject.faults.restore();
      }
      const recovered = await run.attempt(() => setup.provider.checkHealth());
      findings.expect(recovered.ok, `checkHealth after the ${fault} ended ${seen(recovered)}`);
      return findings.outcome();
    },
  };
}

/** The provider contract (providers/types.ts, SPEC.md §3), in the order the rules run. */
export const PROVIDER_RULES: readonly Rule<ProviderRun>[] = [
  {
    id: "provider.describe",
    title: "name and describe() are valid, public and stable",
    async check(run) {
      const findings = new Findings();
      const provider = await run.provider();
      findings.expect(
        PROVIDER_NAME.test(provider.name),
        `name ${JSON.stringify(provider.name)} ${PROVIDER_NAME.test(provider.name) ? "is" : "is not"} lowercase [a-z][a-z0-9-]{0,31} (the key-id prefix)`,
      );
      const first = provider.describe();
      findings.expect(
        first.provider === provider.name,
        `describe().provider is ${JSON.stringify(first.provider)}, name is ${JSON.stringify(provider.name)}`,
      );
      findings.expect(
        typeof first.keyRef === "string" && first.keyRef.length > 0 && first.keyRef.length <= 2048,
        `describe().keyRef is a ${typeof first.keyRef} of ${String(first.keyRef).length} characters (1..2048 wanted)`,
      );
      const text = JSON.stringify(first);
      const key = run.newKey(32);
      const wrap = await run.attempt(() => provider.wrapKey(key, CONTEXT));
      if (wrap.ok) await run.attempt(() => provider.unwrapKey(wrap.value, CONTEXT));
      await run.attempt(() => provider.checkHealth());
      const again = JSON.stringify(provider.describe());
      findings.expect(
        again === text,
        `describe() after wrap, unwrap and checkHealth: ${again === text ? "unchanged" : `changed to ${again.slice(0, 200)}`}`,
      );
      const other = JSON.stringify((await run.provider()).describe());
      findings.expect(
        other === text,
        `a second instance for the same key describes ${other === text ? "the same key" : `another: ${other.slice(0, 200)}`}`,
      );
      return findings.outcome();
    },
  },
  {
    id: "provider.round-trip",
    title: "32-byte keys round-trip; 16..64-byte keys round-trip or are refused up front",
    async check(run) {
      const findings = new Findings();
      const provider = await run.provider();
      for (const size of ROUND_TRIP_SIZES) {
        const key = run.newKey(size);
        const wrap = await run.attempt(() => provider.wrapKey(key, CONTEXT));
        if (!wrap.ok) {
          const refusedUpFront =
            wrap.error instanceof KmsEnvelopeError &&
            !(wrap.error instanceof ProviderError) &&
            wrap.error.code === "INVALID_MASTER_KEY";
          if (size !== 32 && refusedUpFront)
            findings.note(`${size} bytes: refused up front (INVALID_MASTER_KEY)`);
          else findings.fail(`${size} bytes: wrapKey ${seen(wrap)}`);
          continue;
        }
        const wrappedBytes = wrap.value;
        if (wrappedBytes.length === 0) {
          findings.fail(`${size} bytes: wrapKey returned nothing`);
          continue;
        }
        if (Buffer.from(wrappedBytes).includes(Buffer.from(key)))
          findings.fail(`${size} bytes: the wrapped key contains the key`);
        const unwrap = await run.attempt(() => provider.unwrapKey(wrappedBytes, CONTEXT));
        if (!unwrap.ok) findings.fail(`${size} bytes: unwrapKey ${seen(unwrap)}`);
        else
          findings.expect(
            sameBytes(unwrap.value, key),
            `${size} bytes: wrapped to ${wrappedBytes.length} bytes and unwrapped ${sameBytes(unwrap.value, key) ? "to the same key" : `to ${unwrap.value.length} other bytes`}`,
          );
      }
      const key = run.newKey(32);
      const twice = [
        await run.attempt(() => provider.wrapKey(key, CONTEXT)),
        await run.attempt(() => provider.wrapKey(key, CONTEXT)),
      ];
      for (const [index, wrap] of twice.entries()) {
        if (!wrap.ok) {
          findings.fail(`wrapping the same key again (${index + 1}) ${seen(wrap)}`);
          continue;
        }
        const unwrap = await run.attempt(() => provider.unwrapKey(wrap.value, CONTEXT));
        findings.expect(
          unwrap.ok && sameBytes(unwrap.value, key),
          `wrapping the same key twice: copy ${index + 1} unwraps ${unwrap.ok ? "to it" : seen(unwrap)}`,
        );
      }
      return findings.outcome();
    },
  },
  {
    id: "provider.durable",
    title: "a new instance for the same key unwraps what an earlier one wrapped",
    async check(run) {
      if (run.subject.durable === false)
        return skipped(`${run.subject.label} keeps its keys in memory only (a test provider)`);
      const findings = new Findings();
      const setup = await wrapped(run, findings);
      if (setup === undefined) return findings.outcome();
      await setup.provider.close();
      const fresh = await run.provider();
      const unwrap = await run.attempt(() => fresh.unwrapKey(setup.wrapped, CONTEXT));
      findings.expect(
        unwrap.ok && sameBytes(unwrap.value, setup.key),
        `a new instance (the first one closed) unwrapped ${unwrap.ok ? (sameBytes(unwrap.value, setup.key) ? "the same key" : "other bytes") : seen(unwrap)}`,
      );
      return findings.outcome();
    },
  },
  {
    id: "provider.tamper",
    title: "a damaged wrapped key is refused as corrupt",
    async check(run) {
      const findings = new Findings();
      const setup = await wrapped(run, findings);
      if (setup === undefined) return findings.outcome();
      const original = Buffer.from(setup.wrapped);
      const flip = (index: number) => {
        const copy = Buffer.from(original);
        copy[index] = (copy[index] ?? 0) ^ 0x01;
        return copy;
      };
      const damaged: [string, Buffer][] = [
        ["first byte flipped", flip(0)],
        ["middle byte flipped", flip(Math.floor(original.length / 2))],
        ["last byte flipped", flip(original.length - 1)],
        ["last byte dropped", original.subarray(0, original.length - 1)],
        ["one byte appended", Buffer.concat([original, Buffer.from([0])])],
        ["empty", Buffer.alloc(0)],
      ];
      for (const [label, bytes] of damaged) {
        const unwrap = await run.attempt(() => setup.provider.unwrapKey(bytes, CONTEXT));
        if (unwrap.ok)
          findings.fail(
            `${label}: unwrapKey succeeded (${sameBytes(unwrap.value, setup.key) ? "the same key: those bytes are not authenticated" : "other bytes"})`,
          );
        else
          findings.expect(
            errorClassOf(unwrap.error) === "corrupt",
            `${label}: unwrapKey ${seen(unwrap)}`,
          );
      }
      return findings.outcome();
    },
  },
  {
    id: "provider.wrong-key",
    title: "a key wrapped under another provider key is refused as corrupt or user",
    async check(run) {
      const other = await run.otherKeyProvider();
      if (other === undefined) return skipped(`no second key was given for ${run.subject.label}`);
      const findings = new Findings();
      const provider = await run.provider();
      const key = run.newKey(32);
      const wrap = await run.attempt(() => other.wrapKey(key, CONTEXT));
      if (!wrap.ok) return findings.fail(`wrapKey with the other key ${seen(wrap)}`).outcome();
      const unwrap = await run.attempt(() => provider.unwrapKey(wrap.value, CONTEXT));
      if (unwrap.ok)
        findings.fail(
          `unwrapKey with the key under test succeeded (${sameBytes(unwrap.value, key) ? "the same key" : "other bytes"})`,
        );
      else {
        const errorClass = errorClassOf(unwrap.error);
        findings.expect(
          errorClass === "corrupt" || errorClass === "user",
          `unwrapKey with the key under test ${seen(unwrap)}`,
        );
      }
      return findings.outcome();
    },
  },
  {
    id: "provider.context",
    title: "a wrapped key is bound to its key id (context)",
    async check(run) {
      const findings = new Findings();
      const setup = await wrapped(run, findings);
      if (setup === undefined) return findings.outcome();
      const unwrap = await run.attempt(() =>
        setup.provider.unwrapKey(setup.wrapped, OTHER_CONTEXT),
      );
      if (!unwrap.ok) {
        const errorClass = errorClassOf(unwrap.error);
        findings.expect(
          errorClass === "corrupt" || errorClass === "user",
          `unwrapKey under another key id ${seen(unwrap)}`,
        );
      } else {
        // Legal: the daemon checks that an unwrapped key derives the key id it was filed under,
        // so a swapped keyring entry is still caught; binding at the provider catches it sooner.
        findings.warn(
          "unwrapKey under another key id succeeded: the provider does not bind the context (the daemon's key-id check still refuses swapped entries)",
        );
      }
      return findings.outcome();
    },
  },
  {
    id: "provider.health",
    title: "checkHealth resolves while the key service is healthy",
    async check(run) {
      const findings = new Findings();
      const provider = await run.provider();
      for (let index = 1; index <= 3; index += 1) {
        const health = await run.attempt(() => provider.checkHealth());
        findings.expect(health.ok, `checkHealth ${index} ${seen(health)}`);
      }
      return findings.outcome();
    },
  },
  faultRule(
    "provider.health-throttled",
    "throttling is reported as throttled, then recovers",
    "throttle",
    "throttled",
  ),
  faultRule(
    "provider.health-outage",
    "an outage is reported as other, then recovers",
    "outage",
    "other",
  ),
  faultRule(
    "provider.health-revoked",
    "revocation is reported as user, then recovers",
    "revoke",
    "user",
  ),
  {
    id: "provider.timeout",
    title: "a call to a stalled key service fails as other within the configured deadline",
    async check(run) {
      const { faults, timeoutMs } = run.subject;
      if (faults?.delay === undefined || timeoutMs === undefined)
        return skipped(`the key service behind ${run.subject.label} cannot be stalled`);
      const findings = new Findings();
      const setup = await wrapped(run, findings);
      if (setup === undefined) return findings.outcome();
      const slack = Math.max(1000, timeoutMs / 2);
      // Longer than deadline plus slack, so a provider that waits it out is told apart.
      const stallMs = timeoutMs + slack + 500;
      await faults.delay(stallMs);
      try {
        const unwrap = await run.attempt(() => setup.provider.unwrapKey(setup.wrapped, CONTEXT));
        if (unwrap.ok)
          findings.fail(
            `unwrapKey succeeded after ${unwrap.ms} ms although the service was stalled for ${stallMs} ms`,
          );
        else {
          findings.expect(
            unwrap.ms <= timeoutMs + slack,
            `unwrapKey gave up after ${unwrap.ms} ms (deadline ${timeoutMs} ms, ${slack} ms slack)`,
          );
          findings.expect(
            errorClassOf(unwrap.error) === "other",
            `unwrapKey ${seen(unwrap)} (expected other)`,
          );
        }
      } finally {
        await faults.restore();
      }
      return findings.outcome();
    },
  },
  {
    id: "provider.abort",
    title: "a call whose caller gives up (AbortSignal) ends promptly",
    async check(run) {
      const { faults } = run.subject;
      if (faults?.delay === undefined)
        return skipped(`the key service behind ${run.subject.label} cannot be stalled`);
      const findings = new Findings();
      const setup = await wrapped(run, findings);
      if (setup === undefined) return findings.outcome();
      const abortAfterMs = 200;
      const slack = 1000;
      await faults.delay(abortAfterMs + slack + 500);
      try {
        const signal = AbortSignal.timeout(abortAfterMs);
        const unwrap = await run.attempt(() =>
          setup.provider.unwrapKey(setup.wrapped, CONTEXT, signal),
        );
        if (unwrap.ok)
          findings.fail(
            `unwrapKey succeeded after ${unwrap.ms} ms although the caller gave up at ${abortAfterMs} ms`,
          );
        else {
          findings.expect(
            unwrap.ms <= abortAfterMs + slack,
            `unwrapKey ended ${unwrap.ms} ms after the call (caller gave up at ${abortAfterMs} ms)`,
          );
          findings.expect(unwrap.error instanceof ProviderError, `unwrapKey ${seen(unwrap)}`);
        }
      } finally {
        await faults.restore();
      }
      return findings.outcome();
    },
  },
  {
    id: "provider.concurrency",
    title: "hundreds of parallel unwraps all return the right key",
    async check(run) {
      const findings = new Findings();
      const provider = await run.provider();
      const keys = [run.newKey(32), run.newKey(32), run.newKey(32), run.newKey(32)];
      const wrappedKeys: Uint8Array[] = [];
      for (const key of keys) {
        const wrap = await run.attempt(() => provider.wrapKey(key, CONTEXT));
        if (!wrap.ok) return findings.fail(`wrapKey ${seen(wrap)}`).outcome();
        wrappedKeys.push(wrap.value);
      }
      const started = performance.now();
      const results = await Promise.all(
        Array.from({ length: run.concurrency }, (_, index) =>
          run.attempt(() =>
            provider.unwrapKey(wrappedKeys[index % keys.length] as Uint8Array, CONTEXT),
          ),
        ),
      );
      const elapsed = Math.round(performance.now() - started);
      // Failures by class, with the first one's description as the example.
      const failures = new Map<string, { count: number; example: string }>();
      let wrong = 0;
      for (const [index, result] of results.entries()) {
        if (!result.ok) {
          const label = errorClassOf(result.error);
          const seenBefore = failures.get(label);
          if (seenBefore === undefined) failures.set(label, { count: 1, example: seen(result) });
          else seenBefore.count += 1;
        } else if (!sameBytes(result.value, keys[index % keys.length] as Uint8Array)) wrong += 1;
      }
      findings.note(
        `${run.concurrency} unwraps of ${keys.length} wrapped keys in flight at once took ${elapsed} ms`,
      );
      for (const [label, { count, example }] of failures) {
        findings.fail(`${count} unwraps failed as ${label}, e.g. ${example}`);
      }
      if (wrong > 0) findings.fail(`${wrong} unwraps returned the wrong key`);
      return findings.outcome();
    },
  },
  {
    id: "provider.close",
    title: "close() can be called twice; later calls are refused",
    async check(run) {
      const findings = new Findings();
      const setup = await wrapped(run, findings);
      if (setup === undefined) return findings.outcome();
      for (const label of ["first", "second"]) {
        const closed = await run.attempt(() =>
          withDeadline(setup.provider.close(), 5000, `${label} close()`),
        );
        findings.expect(closed.ok, `${label} close() ${seen(closed)}`);
      }
      const calls: [string, () => Promise<unknown>][] = [
        ["wrapKey", () => setup.provider.wrapKey(run.newKey(32), CONTEXT)],
        ["unwrapKey", () => setup.provider.unwrapKey(setup.wrapped, CONTEXT)],
      ];
      for (const [operation, call] of calls) {
        const after = await run.attempt(() =>
          withDeadline(call(), 5000, `${operation} after close()`),
        );
        // Legal: the daemon never calls a closed provider; answering with wiped key material
        // would still be a trap for other callers, so it is worth a warning.
        if (after.ok) findings.warn(`${operation} after close() succeeded`);
        else findings.note(`${operation} after close() ${seen(after)}`);
      }
      return findings.outcome();
    },
  },
  {
    id: "provider.no-secrets",
    title: "no key material in errors or output (checked over the whole run)",
    async check(run) {
      const findings = new Findings();
      // A few more failures with key material in play, in case the rules above saw none.
      const provider = await run.provider();
      const key = run.newKey(32);
      await run.attempt(() => provider.unwrapKey(key, CONTEXT));
      await run.attempt(() => provider.wrapKey(run.newKey(7), CONTEXT));
      for (const error of run.errors) {
        const leak = findSecret(exposedText(error), run.secrets);
        if (leak !== undefined)
          // The leaking message itself is not quoted: the report would repeat the leak.
          findings.fail(
            `an error (${error instanceof Error ? error.name : typeof error}) exposes ${leak}`,
          );
      }
      const leak = findSecret(run.output.join(""), run.secrets);
      if (leak !== undefined) findings.fail(`stdout/stderr during the run contain ${leak}`);
      const description = findSecret(JSON.stringify(provider.describe()), run.secrets);
      if (description !== undefined) findings.fail(`describe() contains ${description}`);
      findings.note(
        `${run.errors.length} errors and ${run.output.length} output writes searched for ${run.secrets.length} keys`,
      );
      return findings.outcome();
    },
  },
];

function withDeadline<T>(promise: Promise<T>, milliseconds: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${what} did not finish within ${milliseconds} ms`)),
      milliseconds,
    );
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

/** Runs one rule against a run's subject, capturing output for the no-secret rule. */
export function runProviderRule(rule: Rule<ProviderRun>, run: ProviderRun): Promise<RuleResult> {
  return captureOutput(() => runRule(rule, run), run.output);
}

/** Runs every provider rule against one subject and reports. */
export async function runProviderConformance(
  subject: ProviderSubject,
  options: ProviderRunOptions = {},
): Promise<ConformanceReport> {
  const startedAt = new Date();
  const run = new ProviderRun(subject, options);
  const results: RuleResult[] = [];
  try {
    for (const rule of PROVIDER_RULES) {
      results.push(await runProviderRule(rule, run));
    }
  } finally {
    await run.close();
  }
  return buildReport("provider", subject.label, startedAt, results);
}
