const STOP_SIGNALS = ["SIGTERM", "SIGINT"] as const;

/**
 * SIGTERM and SIGINT, caught from the first moment of `serve` (before the rest of the CLI is
 * loaded), so a stop request at any point of start-up ends in a clean exit 0 with nothing
 * left behind, instead of the default death by signal (issue 11). `signal` aborts on the
 * first one; start-up steps watch it and undo what they did.
 */
export class StopSignals {
  readonly #controller = new AbortController();
  #received: NodeJS.Signals | undefined;

  private constructor() {
    for (const name of STOP_SIGNALS) {
      process.on(name, () => {
        this.#received ??= name;
        this.#controller.abort();
      });
    }
  }

  /** Catches the stop signals from now on, for the life of the process. */
  static install(): StopSignals {
    return new StopSignals();
  }

  /** Aborted once a stop signal has arrived. */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** The first stop signal received, if any. */
  get received(): NodeJS.Signals | undefined {
    return this.#received;
  }

  /** Resolves with the first stop signal (at once if one already arrived). */
  stopped(): Promise<NodeJS.Signals> {
    return new Promise((resolve) => {
      const settle = (): void => resolve(this.#received ?? "SIGTERM");
      if (this.#controller.signal.aborted) settle();
      else this.#controller.signal.addEventListener("abort", settle, { once: true });
    });
  }
}
