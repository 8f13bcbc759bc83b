import { Worker } from "node:worker_threads";
import type { FromWorker, Posted, ToWorker } from "./worker-protocol.js";

/** How a {@link WorkerPool} is made; see {@link WorkerPool.start}. */
interface WorkerPoolOptions<Keys> {
  /** Names the workers in errors and logs ("field worker"). */
  readonly name: string;
  /** The worker module, as `new URL("./x-worker.js", import.meta.url)`; it calls serveWorker. */
  readonly script: URL;
  /** How many workers run. */
  readonly size: number;
  /** Handed to every worker as its `workerData` (cloned). */
  readonly workerData?: unknown;
  /** Heap cap of each worker, in MiB; a job that needs more kills only its worker. */
  readonly heapMb?: number;
  /** Most jobs that may wait for a worker; past it, `overloaded()` is the answer. */
  readonly maxQueued?: number;
  /**
   * A fresh copy of the current key set for one worker, and its buffers to move there; none
   * when the workers find their keys themselves.
   */
  readonly keys?: () => Posted<Keys>;
  /** The error a job gets when the queue is full: says what to do. */
  readonly overloaded: () => Error;
  /** The error a job gets once the pool is closed. */
  readonly closed: () => Error;
  /** Told of a worker that failed or stopped (it is being replaced unless the pool is closed). */
  readonly onWorkerLost?: (detail: { exitCode?: number; error?: Error }) => void;
}

interface Job<Input, Answer> {
  readonly id: number;
  readonly input: Posted<Input>;
  readonly resolve: (answer: Answer) => void;
  readonly reject: (error: Error) => void;
}

interface Slot<Input, Answer> {
  readonly worker: Worker;
  readonly startedAt: number;
  ready: boolean;
  job: Job<Input, Answer> | undefined;
  /** performance.now() when the running job was posted. */
  jobStartedAt: number;
}

/** What a pool is doing, for metrics. */
export interface WorkerPoolStats {
  /** Workers loaded and able to take jobs. */
  readonly workers: number;
  /** Workers running a job now. */
  readonly busy: number;
  /** Jobs waiting for a worker. */
  readonly queued: number;
  /** Workers replaced since the pool started because one stopped or failed. */
  readonly restarts: number;
  /** Time workers have spent running jobs, summed over workers, running jobs included. */
  readonly busySeconds: number;
}

const DEFAULT_HEAP_MB = 512;
const DEFAULT_MAX_QUEUED = 256;
// A worker that dies this soon after starting is restarted after a pause, not in a loop.
const RESTART_PAUSE_MS = 1000;
// close() asks workers to wipe their keys and stop; one that does not is terminated.
const CLOSE_GRACE_MS = 1000;

/**
 * Worker threads that each hold a copy of a key set and run one job at a time, in arrival
 * order, with a bounded queue. A worker that dies fails only its job and is replaced (after a
 * pause when it died young); a new key set is sent to every worker, which wipes the old one;
 * close() waits for every worker to stop. The daemon's field service and the library's field
 * layer both run on it.
 */
export class WorkerPool<Keys, Input, Answer> {
  readonly #options: WorkerPoolOptions<Keys>;
  readonly #slots: Slot<Input, Answer>[] = [];
  readonly #queue: Job<Input, Answer>[] = [];
  #nextId = 0;
  #closed = false;
  #restarts = 0;
  /** Busy time of jobs that have ended, in ms. */
  #busyMs = 0;

  private constructor(options: WorkerPoolOptions<Keys>) {
    this.#options = options;
  }

  /** Starts the workers and resolves once each has loaded and received its keys. */
  static async start<Keys, Input, Answer>(
    options: WorkerPoolOptions<Keys>,
  ): Promise<WorkerPool<Keys, Input, Answer>> {
    const pool = new WorkerPool<Keys, Input, Answer>(options);
    try {
      await Promise.all(Array.from({ length: options.size }, () => pool.#addWorker()));
    } catch (error) {
      await pool.close();
      throw error;
    }
    return pool;
  }

  /** Workers that could start a job now: loaded, not busy, and not claimed by a waiting job. */
  get idle(): number {
    let free = 0;
    for (const slot of this.#slots) if (slot.ready && slot.job === undefined) free += 1;
    return Math.max(0, free - this.#queue.length);
  }

  /** What the pool is doing now and has done since it started. */
  stats(): WorkerPoolStats {
    const now = performance.now();
    let workers = 0;
    let busy = 0;
    let busyMs = this.#busyMs;
    for (const slot of this.#slots) {
      if (slot.ready) workers += 1;
      if (slot.job !== undefined) {
        busy += 1;
        busyMs += now - slot.jobStartedAt;
      }
    }
    return {
      workers,
      busy,
      queued: this.#queue.length,
      restarts: this.#restarts,
      busySeconds: busyMs / 1000,
    };
  }

  /** Sends every worker a fresh copy of the key set; jobs already running finish on the old one. */
  replaceKeys(): void {
    for (const slot of this.#slots) this.#sendKeys(slot.worker);
  }

  /**
   * Runs a job in the next free worker. Rejects with `overloaded()` when the queue is full,
   * `closed()` after close, and an error naming the exit code when the worker died running it.
   */
  run(input: Posted<Input>): Promise<Answer> {
    if (this.#closed) return Promise.reject(this.#options.closed());
    if (this.#queue.length >= (this.#options.maxQueued ?? DEFAULT_MAX_QUEUED))
      return Promise.reject(this.#options.overloaded());
    return new Promise((resolve, reject) => {
      this.#queue.push({ id: this.#nextId++, input, resolve, reject });
      this.#dispatch();
    });
  }

  /** Refuses waiting jobs, asks every worker to wipe its keys and stop, and waits for them. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const job of this.#queue.splice(0)) job.reject(this.#options.closed());
    await Promise.all(
      this.#slots.map(async ({ worker }) => {
        const exited = new Promise<void>((resolve) => worker.once("exit", () => resolve()));
        worker.postMessage({ kind: "close" } satisfies ToWorker<Keys, Input>);
        const timer = setTimeout(() => void worker.terminate(), CLOSE_GRACE_MS);
        await exited;
        clearTimeout(timer);
      }),
    );
  }

  #dispatch(): void {
    for (const slot of this.#slots) {
      // A worker still loading gets its first job once ready, so none waits behind its start.
      if (!slot.ready || slot.job !== undefined) continue;
      const job = this.#queue.shift();
      if (job === undefined) return;
      slot.job = job;
      slot.jobStartedAt = performance.now();
      slot.worker.postMessage(
        { kind: "job", id: job.id, job: job.input.value } satisfies ToWorker<Keys, Input>,
        [...(job.input.transfer ?? [])],
      );
    }
  }

  #sendKeys(worker: Worker): void {
    if (this.#options.keys === undefined) return;
    const copy = this.#options.keys();
    // Moved, so the copies exist only in the worker, which wipes them.
    worker.postMessage({ kind: "keys", keys: copy.value } satisfies ToWorker<Keys, Input>, [
      ...(copy.transfer ?? []),
    ]);
  }

  #addWorker(): Promise<void> {
    const worker = spawn(this.#options);
    const slot: Slot<Input, Answer> = {
      worker,
      startedAt: performance.now(),
      ready: false,
      job: undefined,
      jobStartedAt: 0,
    };
    this.#slots.push(slot);
    this.#sendKeys(worker);
    return new Promise((resolve, reject) => {
      worker.on("message", (message: FromWorker<Answer>) => {
        if (message.kind === "ready") {
          slot.ready = true;
          resolve();
          this.#dispatch();
        } else this.#onDone(slot, message.id, message.answer);
      });
      worker.once("error", (error) => {
        reject(error);
        this.#options.onWorkerLost?.({ error });
      });
      worker.once("exit", (code) => this.#onExit(slot, code));
    });
  }

  #onDone(slot: Slot<Input, Answer>, id: number, answer: Answer): void {
    const job = slot.job;
    this.#endJob(slot);
    if (job !== undefined && job.id === id) job.resolve(answer);
    this.#dispatch();
  }

  #endJob(slot: Slot<Input, Answer>): void {
    if (slot.job !== undefined) this.#busyMs += performance.now() - slot.jobStartedAt;
    slot.job = undefined;
  }

  #onExit(slot: Slot<Input, Answer>, code: number): void {
    const index = this.#slots.indexOf(slot);
    if (index >= 0) this.#slots.splice(index, 1);
    slot.job?.reject(
      new Error(`${this.#options.name} stopped (exit code ${code}) while running this call`),
    );
    this.#endJob(slot);
    if (this.#closed) return;
    this.#restarts += 1;
    this.#options.onWorkerLost?.({ exitCode: code });
    const pause = performance.now() - slot.startedAt < RESTART_PAUSE_MS ? RESTART_PAUSE_MS : 0;
    setTimeout(() => {
      if (this.#closed) return;
      this.#addWorker().catch(() => undefined);
    }, pause).unref();
  }
}

function spawn(options: WorkerPoolOptions<unknown>): Worker {
  const settings = {
    workerData: options.workerData,
    resourceLimits: { maxOldGenerationSizeMb: options.heapMb ?? DEFAULT_HEAP_MB },
  };
  const worker = import.meta.url.endsWith(".ts")
    ? // Run from source (tsx): on Node 20 a worker does not inherit the TypeScript loader.
      new Worker(
        `import(${JSON.stringify(import.meta.resolve("tsx/esm/api"))}).then((tsx) => {
          tsx.register();
          return import(${JSON.stringify(options.script.href.replace(/\.js$/, ".ts"))});
        })`,
        { ...settings, eval: true },
      )
    : new Worker(options.script, settings);
  // Workers never keep a stopping process alive; close() ends them deliberately.
  worker.unref();
  return worker;
}
