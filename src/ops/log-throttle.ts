import type { Logger } from "./logger.js";

/** How many lines of one kind are written per window before the rest are only counted. */
const LINES_PER_WINDOW = 5;
const WINDOW_MS = 10_000;

interface Window {
  written: number;
  suppressed: number;
  level: "warn" | "error";
  fields: Record<string, unknown>;
}

/**
 * Rate-limits repetitive warnings such as refused calls: a client that sends 100,000 bad
 * calls must not be able to fill the disk with log lines (issue 11). Per kind, the first
 * lines of each window are written; the rest are counted and reported as one summary line
 * when the window ends. Metrics keep every count; this only limits what reaches the log.
 */
export class LogThrottle {
  readonly #logger: Logger;
  readonly #windows = new Map<string, Window>();
  #timer: NodeJS.Timeout | undefined;

  constructor(logger: Logger) {
    this.#logger = logger;
  }

  /** Writes `message` unless `kind` has used up its lines for this window. */
  write(
    level: "warn" | "error",
    kind: string,
    fields: Record<string, unknown>,
    message: string,
  ): void {
    let window = this.#windows.get(kind);
    if (window === undefined) {
      window = { written: 0, suppressed: 0, level, fields };
      this.#windows.set(kind, window);
      this.#timer ??= setTimeout(() => this.flush(), WINDOW_MS).unref();
    }
    if (window.written < LINES_PER_WINDOW) {
      window.written += 1;
      this.#logger[level](fields, message);
    } else {
      window.suppressed += 1;
      window.fields = fields;
    }
  }

  /** Ends the window: one summary line per kind whose lines were suppressed. */
  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const window of this.#windows.values()) {
      if (window.suppressed > 0) {
        this.#logger[window.level](
          { ...window.fields, suppressed: window.suppressed, windowSeconds: WINDOW_MS / 1000 },
          "more lines like this were suppressed (counted in metrics)",
        );
      }
    }
    this.#windows.clear();
  }
}
