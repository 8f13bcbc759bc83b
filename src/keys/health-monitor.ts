import type { ProviderErrorClass } from "../../providers/types.js";
import { ProviderError } from "../../providers/types.js";

/** A point-in-time view of custody health, cheap to read on every request and probe. */
export interface HealthSnapshot {
  /** True when the last check succeeded. */
  healthy: boolean;
  /** True once the provider has failed for longer than the grace period: crypto is refused. */
  suspended: boolean;
  /** Class of the last failure, when unhealthy. */
  errorClass?: ProviderErrorClass;
  /** Message of the last failure (provider messages never carry key material). */
  message?: string;
  /** When the current run of failures began (ms since epoch), when unhealthy. */
  failingSince?: number;
  /** When the last check finished (ms since epoch), 0 before the first. */
  checkedAt: number;
}

/** Options of a HealthMonitor. */
export interface HealthMonitorOptions {
  /** The provider check; rejects with a ProviderError when the key is not usable. */
  check: (signal: AbortSignal) => Promise<void>;
  /** Time between checks. */
  intervalMs: number;
  /** How long a failing provider is tolerated before encryption stops (SPEC.md §3). */
  gracePeriodMs: number;
  /** Deadline of one check. */
  timeoutMs: number;
  /** Called after every check; `changed` is true when the outcome differs from the last one. */
  onCheck?: (snapshot: HealthSnapshot, changed: boolean) => void;
  /** Clock, injectable for tests. */
  now?: () => number;
}

/**
 * Re-checks the custody provider on an interval and caches the answer, so probes and Status
 * polls cost no provider calls, and revoking the provider key is honoured after the grace period.
 */
export class HealthMonitor {
  readonly #options: HealthMonitorOptions;
  readonly #now: () => number;
  #snapshot: HealthSnapshot = { healthy: true, suspended: false, checkedAt: 0 };
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<HealthSnapshot> | undefined;

  constructor(options: HealthMonitorOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  /** Runs the first check now, then one every interval. */
  async start(): Promise<HealthSnapshot> {
    const first = await this.checkNow();
    this.#timer = setInterval(() => void this.checkNow(), this.#options.intervalMs);
    this.#timer.unref();
    return first;
  }

  /** Stops the interval checks. */
  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** The cached state, with suspension re-evaluated against the clock. */
  snapshot(): HealthSnapshot {
    const snapshot = this.#snapshot;
    if (snapshot.healthy || snapshot.failingSince === undefined) return snapshot;
    const suspended = this.#now() - snapshot.failingSince >= this.#options.gracePeriodMs;
    return suspended === snapshot.suspended ? snapshot : { ...snapshot, suspended };
  }

  /** Runs one check now; concurrent callers share the same check. */
  checkNow(): Promise<HealthSnapshot> {
    this.#running ??= this.#runCheck().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  async #runCheck(): Promise<HealthSnapshot> {
    const previous = this.#snapshot;
    const controller = new AbortController();
    // The deadline is enforced here, not left to the check: a provider call that ignores its
    // signal would otherwise hold #running forever and freeze the snapshot at its last value.
    const deadline = new Promise<never>((_, reject) => {
      controller.signal.addEventListener(
        "abort",
        () => reject(new ProviderError("other", "provider health check timed out")),
        { once: true },
      );
    });
    const timer = setTimeout(() => controller.abort(), this.#options.timeoutMs);
    try {
      await Promise.race([this.#options.check(controller.signal), deadline]);
      this.#snapshot = { healthy: true, suspended: false, checkedAt: this.#now() };
    } catch (error) {
      const classified =
        error instanceof ProviderError
          ? error
          : new ProviderError("other", "provider health check failed", { cause: error });
      const failingSince = previous.failingSince ?? this.#now();
      this.#snapshot = {
        healthy: false,
        suspended: false,
        errorClass: classified.errorClass,
        message: classified.message,
        failingSince,
        checkedAt: this.#now(),
      };
      this.#snapshot = this.snapshot();
    } finally {
      clearTimeout(timer);
    }
    const changed =
      previous.checkedAt === 0 ||
      previous.healthy !== this.#snapshot.healthy ||
      previous.suspended !== this.#snapshot.suspended ||
      previous.errorClass !== this.#snapshot.errorClass;
    try {
      this.#options.onCheck?.(this.#snapshot, changed);
    } catch {
      // A failing observer (a log or metrics sink) must not stop health checking.
    }
    return this.#snapshot;
  }
}
