import { parentPort } from "node:worker_threads";
import type { FromWorker, Posted, ToWorker } from "./worker-protocol.js";

/** What a worker of a {@link WorkerPool} does with the pool's messages. */
interface WorkerHost<Keys, Job, Answer> {
  /**
   * Takes a new key set, owning (and wiping) it, and disposes of the previous one; absent when
   * the worker finds its keys itself.
   */
  keys?(keys: Keys): void;
  /** Runs one job; failures are part of the answer, so nothing thrown escapes. */
  run(job: Job): Posted<Answer> | Promise<Posted<Answer>>;
  /** Wipes the keys before the worker stops. */
  close(): void;
}

/**
 * Serves a pool from inside a worker thread: announces `ready`, then answers jobs one at a
 * time in arrival order, so a key set sent between two jobs applies from the second on.
 */
export function serveWorker<Keys, Job, Answer>(host: WorkerHost<Keys, Job, Answer>): void {
  const port = parentPort;
  if (port === null) throw new Error("serveWorker runs only in a worker thread");
  port.on("message", (message: ToWorker<Keys, Job>) => {
    switch (message.kind) {
      case "keys":
        host.keys?.(message.keys);
        return;
      case "job": {
        const answer = (done: Posted<Answer>) =>
          port.postMessage(
            { kind: "done", id: message.id, answer: done.value } satisfies FromWorker<Answer>,
            [...(done.transfer ?? [])],
          );
        const done = host.run(message.job);
        // The pool sends a worker its next job only after this answer, so jobs never overlap.
        if (done instanceof Promise) void done.then(answer);
        else answer(done);
        return;
      }
      case "close":
        host.close();
        port.close();
        return;
    }
  });
  port.postMessage({ kind: "ready" } satisfies FromWorker<Answer>);
}
