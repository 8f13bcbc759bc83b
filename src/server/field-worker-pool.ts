import { Worker } from "node:worker_threads";
import { KmsEnvelopeError } from "../errors.js";
import type { MasterKeySet } from "../keys/master-key-set.js";
import type { Logger } from "../ops/logger.js";
import type { FieldBatchLimits, FieldMethod } from "./field-batch.js";
import type { DoneMessage, FromWorker, ToWorker } from "./field-worker-protocol.js";
import type { RawOutcome } from "./grpc-server.js";

/** A field-service call's outcome, with the number of field values it carried. */
type FieldOutcome = RawOutcome & { fields: number; stale?: boolean };

interface Job {
  readonly id: number;
  readonly method: FieldMethod;
  readonly message: Uint8Array;
  readonly resolve: (outcome: FieldOutcome) => void;
}

interface Slot {
  worker: Worker;
  job: Job | undefined;
  startedAt: number;
}

// Jobs waiting for a worker; the request bytes they hold are already bounded by the server's
// budgets, this only keeps the wait (and so the answer's latency) bounded too.
const MAX_QUEUED_JOBS = 256;
// A worker may use this much heap by default; a batch that needs more kills only that worker.
const WORKER_HEAP_MB = 512;
// A worker that dies this soon after starting is restarted after a pause, not in a loop.
const RESTART_PAUSE_MS = 1000;

/**
 * Worker threads that run field-service batches (seal, open) off the event loop, so
 * kube-apiserver's KMS calls are answered while large batches run (issue 11), and a second
 * core is used. Each worker holds its own copy of the master-key set, replaced and wiped when
 * the keyring changes; jobs queue in arrival order and each worker runs one at a time.
 */
export class FieldWorkerPool {
  readonly #slots: Slot[] = [];
  readonly #queue: Job[] = [];
  readonly #limits: FieldBatchLimits;
  readonly #heapMb: number;
  readonly #logger: Logger;
  #keys: MasterKeySet;
  #nextId = 0;
  #closed = false;

  private constructor(
    keys: MasterKeySet,
    limits: FieldBatchLimits,
    heapMb: number,
    logger: Logger,
  ) {
    this.#keys = keys;
    this.#limits = limits;
    this.#heapMb = heapMb;
    this.#logger = logger;
  }

  /**
   * Starts `size` workers and resolves once each has loaded libsodium and its keys. `heapMb`
   * caps each worker's heap (default 512 MiB).
   */
  static async start(options: {
    size: number;
    keys: MasterKeySet;
    limits: FieldBatchLimits;
    logger: Logger;
    heapMb?: number;
  }): Promise<FieldWorkerPool> {
    const pool = new FieldWorkerPool(
      options.keys,
      options.limits,
      options.heapMb ?? WORKER_HEAP_MB,
      options.logger,
    );
    try {
      await Promise.all(Array.from({ length: options.size }, () => pool.#addWorker()));
    } catch (error) {
      await pool.close();
      throw error;
    }
    return pool;
  }

  /** Sends every worker a copy of the new key set; jobs already running finish on the old one. */
  replaceKeys(keys: MasterKeySet): void {
    this.#keys = keys;
    for (const slot of this.#slots) this.#sendKeys(slot.worker);
  }

  /** Runs one call in the next free worker; failures come back in the outcome, never thrown. */
  run(method: FieldMethod, message: Uint8Array): Promise<FieldOutcome> {
    if (this.#closed) {
      return Promise.resolve({
        fields: 0,
        error: new KmsEnvelopeError("DAEMON_UNREACHABLE", "the daemon is shutting down: retry"),
      });
    }
    if (this.#queue.length >= MAX_QUEUED_JOBS) {
      return Promise.resolve({
        fields: 0,
        error: new KmsEnvelopeError(
          "OVERLOADED",
          "every field worker is busy and the queue is full: retry later or raise --field-workers",
        ),
      });
    }
    return new Promise((resolve) => {
      this.#queue.push({ id: this.#nextId++, method, message, resolve });
      this.#dispatch();
    });
  }

  /** Asks every worker to wipe its keys and stop; waits for them (terminating stragglers). */
  async close(): Promise<void> {
    this.#closed = true;
    for (const job of this.#queue.splice(0)) {
      job.resolve({
        fields: 0,
        error: new KmsEnvelopeError("DAEMON_UNREACHABLE", "the daemon is shutting down: retry"),
      });
    }
    await Promise.all(
      this.#slots.map(async ({ worker }) => {
        const exited = new Promise<void>((resolve) => worker.once("exit", () => resolve()));
        worker.postMessage({ kind: "close" } satisfies ToWorker);
        const timer = setTimeout(() => void worker.terminate(), 1000);
        await exited;
        clearTimeout(timer);
      }),
    );
  }

  #dispatch(): void {
    for (const slot of this.#slots) {
      if (slot.job !== undefined) continue;
      const job = this.#queue.shift();
      if (job === undefined) return;
      slot.job = job;
      // Cloned, not moved: the server zeroes its own copy of the request when the call ends.
      slot.worker.postMessage({
        kind: "job",
        id: job.id,
        method: job.method,
        message: job.message,
      } satisfies ToWorker);
    }
  }

  #sendKeys(worker: Worker): void {
    const copy = this.#keys.copyForWorker();
    // Moved, so the copies exist only in the worker, which wipes them after use.
    worker.postMessage(
      { kind: "keys", ...copy } satisfies ToWorker,
      copy.keys.map((entry) => entry.key.buffer as ArrayBuffer),
    );
  }

  #addWorker(): Promise<void> {
    const worker = spawnWorker(this.#limits, this.#heapMb);
    const slot: Slot = { worker, job: undefined, startedAt: performance.now() };
    this.#slots.push(slot);
    this.#sendKeys(worker);
    return new Promise((resolve, reject) => {
      worker.on("message", (message: FromWorker) => {
        if (message.kind === "ready") resolve();
        else this.#onDone(slot, message);
      });
      worker.once("error", (error) => {
        reject(error);
        this.#logger.error({ err: error }, "field worker failed");
      });
      worker.once("exit", (code) => this.#onExit(slot, code));
    });
  }

  #onDone(slot: Slot, done: DoneMessage): void {
    const job = slot.job;
    slot.job = undefined;
    if (job !== undefined && job.id === done.id) {
      const outcome: FieldOutcome = { fields: done.fields, uid: done.uid, stale: done.stale };
      if (done.response !== undefined) outcome.response = done.response;
      else if (done.refusal !== undefined)
        outcome.error = new KmsEnvelopeError(done.refusal.code, done.refusal.message);
      else outcome.error = new Error(done.failure ?? "field worker gave no answer");
      job.resolve(outcome);
    }
    this.#dispatch();
  }

  #onExit(slot: Slot, code: number): void {
    const index = this.#slots.indexOf(slot);
    if (index >= 0) this.#slots.splice(index, 1);
    slot.job?.resolve({
      fields: 0,
      error: new Error(`field worker stopped (exit code ${code}) while running this call`),
    });
    slot.job = undefined;
    if (this.#closed) return;
    this.#logger.error({ exitCode: code }, "field worker stopped; starting another");
    const pause = performance.now() - slot.startedAt < RESTART_PAUSE_MS ? RESTART_PAUSE_MS : 0;
    setTimeout(() => {
      if (this.#closed) return;
      this.#addWorker().then(
        () => this.#dispatch(),
        () => undefined,
      );
      this.#dispatch();
    }, pause).unref();
  }
}

function spawnWorker(limits: FieldBatchLimits, heapMb: number): Worker {
  const options = {
    workerData: {
      maxFieldsPerRequest: limits.maxFieldsPerRequest,
      maxFieldsPerRecord: limits.maxFieldsPerRecord,
    },
    resourceLimits: { maxOldGenerationSizeMb: heapMb },
  };
  const worker = import.meta.url.endsWith(".ts")
    ? // Run from source (tsx): on Node 20 a worker does not inherit the TypeScript loader.
      new Worker(
        `import(${JSON.stringify(import.meta.resolve("tsx/esm/api"))}).then((tsx) => {
          tsx.register();
          return import(${JSON.stringify(new URL("./field-worker.ts", import.meta.url).href)});
        })`,
        { ...options, eval: true },
      )
    : new Worker(new URL("./field-worker.js", import.meta.url), options);
  // Workers never keep a stopping daemon alive; close() ends them deliberately.
  worker.unref();
  return worker;
}
