import { Worker } from "node:worker_threads";
import { type FromModuleThread, fromTokenFailure, type ToModuleThread } from "./pkcs11-protocol.js";
import { ProviderError } from "./types.js";

type Waiter = { resolve: (message: FromModuleThread) => void; reject: (error: Error) => void };

/**
 * The provider's side of the thread that owns one PKCS#11 module (pkcs11-worker.ts): one per
 * module path in the process, shared by every provider instance naming it, ended when the last
 * one closes. A thread that dies is replaced at the next request, and the instances it knew
 * are registered on the new one.
 */
export class ModuleThread {
  readonly #modulePath: string;
  readonly #opened = new Map<number, Extract<ToModuleThread, { kind: "open" }>>();
  readonly #waiting = new Map<number, Waiter>();
  #worker: Worker | undefined;
  #users = 0;
  #nextId = 1;

  private constructor(modulePath: string) {
    this.#modulePath = modulePath;
  }

  /** The thread for `modulePath`, counted as used by one more instance. */
  static acquire(modulePath: string): ModuleThread {
    let thread = threads.get(modulePath);
    if (thread === undefined) {
      thread = new ModuleThread(modulePath);
      threads.set(modulePath, thread);
    }
    thread.#users += 1;
    return thread;
  }

  /** Registers a provider instance and its key reference with the thread. */
  open(instance: number, keyRef: string, environmentPin: string | undefined): void {
    const message = { kind: "open" as const, instance, keyRef, environmentPin };
    this.#opened.set(instance, message);
    this.#worker?.postMessage(message);
  }

  /**
   * One C_Encrypt or C_Decrypt on the instance's connection. Rejects with what the provider
   * expects: a StaleConnection, a RefusedCiphertext or a ProviderError. `input` is handed over
   * (moved to the thread), so the caller passes a copy it does not need afterwards.
   */
  async operate(
    kind: "encrypt" | "decrypt",
    instance: number,
    parts: { input: Uint8Array; iv: Uint8Array; aad: Uint8Array },
    deadline: number,
    signal: AbortSignal,
  ): Promise<Uint8Array> {
    const id = this.#nextId++;
    const cancel = () => this.#worker?.postMessage({ kind: "cancel", id });
    signal.addEventListener("abort", cancel, { once: true });
    try {
      const answer = await this.#ask(
        { kind, id, instance, deadline, ...parts },
        parts.input.byteOffset === 0 && parts.input.byteLength === parts.input.buffer.byteLength
          ? [parts.input.buffer as ArrayBuffer]
          : [],
      );
      if (answer.kind === "result") return answer.bytes;
      if (answer.kind === "failure") throw fromTokenFailure(answer.failure);
      throw new ProviderError("other", `the PKCS#11 module thread answered ${answer.kind}`);
    } finally {
      signal.removeEventListener("abort", cancel);
    }
  }

  /** Closes the instance's sessions and releases it; the last instance ends the thread. */
  async close(instance: number, timeoutMs: number): Promise<void> {
    this.#opened.delete(instance);
    this.#users -= 1;
    const worker = this.#worker;
    if (worker !== undefined) {
      const id = this.#nextId++;
      // A thread stuck in a hung module may never answer: closing does not wait for ever.
      await within(this.#ask({ kind: "close", id, instance }), timeoutMs);
    }
    if (this.#users > 0) return;
    if (threads.get(this.#modulePath) === this) threads.delete(this.#modulePath);
    this.#worker = undefined;
    // The thread is gone before close() returns. A process that exits while the thread is still
    // stopping runs the module's exit handlers (OpenSSL's, for SoftHSM2) alongside the thread's
    // own teardown, and crashed that way at exit (SIGSEGV). Bounded: a thread inside a hung
    // module call cannot be stopped at all.
    if (worker !== undefined) await within(worker.terminate(), timeoutMs);
  }

  #ask(message: ToModuleThread, transfer: ArrayBuffer[] = []): Promise<FromModuleThread> {
    const worker = this.#worker ?? this.#spawn();
    const id = "id" in message ? message.id : 0;
    return new Promise((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject });
      worker.postMessage(message, transfer);
    });
  }

  #spawn(): Worker {
    const worker = spawnWorker();
    this.#worker = worker;
    worker.on("message", (message: FromModuleThread) => {
      const waiter = this.#waiting.get(message.id);
      this.#waiting.delete(message.id);
      waiter?.resolve(message);
    });
    const stopped = (reason: string) => {
      if (this.#worker !== worker) return;
      this.#worker = undefined;
      const error = new ProviderError(
        "other",
        `the thread running PKCS#11 module ${this.#modulePath} stopped (${reason}); it is started again at the next call`,
      );
      for (const waiter of this.#waiting.values()) waiter.reject(error);
      this.#waiting.clear();
    };
    worker.on("error", (error) => stopped(error.message.split("\n")[0] ?? "error"));
    worker.on("exit", (code) => stopped(`exit code ${code}`));
    for (const message of this.#opened.values()) worker.postMessage(message);
    return worker;
  }
}

const threads = new Map<string, ModuleThread>();

function spawnWorker(): Worker {
  const worker = import.meta.url.endsWith(".ts")
    ? // Run from source (tsx): on Node 20 a worker does not inherit the TypeScript loader.
      new Worker(
        `import(${JSON.stringify(import.meta.resolve("tsx/esm/api"))}).then((tsx) => {
          tsx.register();
          return import(${JSON.stringify(new URL("./pkcs11-worker.ts", import.meta.url).href)});
        })`,
        { eval: true },
      )
    : new Worker(new URL("./pkcs11-worker.js", import.meta.url));
  // The thread never keeps a stopping daemon alive; the last close() ends it deliberately.
  worker.unref();
  return worker;
}

/**
 * Waits for `work` at most `timeoutMs`, whatever it settles to. The timer is referenced: the
 * thread is not (it never keeps a daemon alive), and a process with nothing else to do must
 * still wait for it here rather than end with close() unsettled.
 */
async function within(work: Promise<unknown>, timeoutMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    work.catch(() => undefined),
    new Promise((resolve) => {
      timer = setTimeout(resolve, timeoutMs);
    }),
  ]).finally(() => clearTimeout(timer));
}
