import { parentPort, workerData } from "node:worker_threads";
import { loadSecretbox } from "../crypto/secretbox.js";
import { wipe } from "../crypto/wipe.js";
import { KmsEnvelopeError } from "../errors.js";
import { MasterKeySet } from "../keys/master-key-set.js";
import { type FieldBatchLimits, runFieldBatch } from "./field-batch.js";
import type { DoneMessage, FromWorker, JobMessage, ToWorker } from "./field-worker-protocol.js";

// A field-service worker thread: seals and opens batches with its own copy of the key set,
// so a large batch never holds the event loop that serves kube-apiserver's KMS calls.

const port = parentPort;
if (port === null) throw new Error("field-worker.ts runs only as a worker thread");
const limits = workerData as FieldBatchLimits;
let keys: MasterKeySet | undefined;

function run(job: JobMessage): DoneMessage {
  const done: DoneMessage = { kind: "done", id: job.id, uid: undefined, fields: 0 };
  try {
    if (keys === undefined) throw new Error("no keys received before the first job");
    const result = runFieldBatch(keys, job.method, job.message, limits);
    return {
      ...done,
      uid: result.uid,
      fields: result.fields,
      stale: result.stale === true,
      response: result.response,
    };
  } catch (error) {
    if (error instanceof KmsEnvelopeError) {
      return { ...done, refusal: { code: error.code, message: error.message } };
    }
    return {
      ...done,
      failure: error instanceof Error ? (error.stack ?? error.message) : String(error),
    };
  } finally {
    // The request carries field plaintexts, and decoded values are views of it.
    wipe(job.message);
  }
}

await loadSecretbox();
port.on("message", (message: ToWorker) => {
  switch (message.kind) {
    case "keys": {
      const previous = keys;
      try {
        keys = new MasterKeySet(message.keys, message.retiredKeyIds);
      } finally {
        wipe(...message.keys.map((entry) => entry.key));
      }
      previous?.dispose();
      return;
    }
    case "job": {
      const done = run(message);
      const response = done.response;
      // Only a buffer of its own is moved; one cut from Node's shared pool is copied instead.
      const owned =
        response !== undefined &&
        response.byteOffset === 0 &&
        response.byteLength === response.buffer.byteLength;
      port.postMessage(done satisfies FromWorker, owned ? [response.buffer as ArrayBuffer] : []);
      return;
    }
    case "close":
      keys?.dispose();
      keys = undefined;
      port.close();
      return;
  }
});
port.postMessage({ kind: "ready" } satisfies FromWorker);
