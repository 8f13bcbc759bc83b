import { workerData } from "node:worker_threads";
import { loadSecretbox } from "../crypto/secretbox.js";
import { wipe } from "../crypto/wipe.js";
import { KmsEnvelopeError } from "../errors.js";
import { MasterKeySet } from "../keys/master-key-set.js";
import { serveWorker } from "../workers/worker-host.js";
import { ownBuffer } from "../workers/worker-protocol.js";
import { type FieldBatchLimits, runFieldBatch } from "./field-batch.js";
import type { FieldAnswer, FieldJob, FieldWorkerKeys } from "./field-worker-protocol.js";

// A field-service worker thread: seals and opens batches with its own copy of the key set,
// so a large batch never holds the event loop that serves kube-apiserver's KMS calls.

const limits = workerData as FieldBatchLimits;
let keys: MasterKeySet | undefined;

function run(job: FieldJob): FieldAnswer {
  const answer: FieldAnswer = { uid: undefined, fields: 0 };
  try {
    if (keys === undefined) throw new Error("no keys received before the first job");
    const result = runFieldBatch(keys, job.method, job.message, limits, {
      firstRecord: job.firstRecord,
      counted: (fields) => {
        answer.fields = fields;
      },
    });
    return {
      uid: result.uid,
      fields: result.fields,
      stale: result.stale === true,
      response: result.response,
    };
  } catch (error) {
    if (error instanceof KmsEnvelopeError)
      return { ...answer, refusal: { code: error.code, message: error.message } };
    return {
      ...answer,
      failure: error instanceof Error ? (error.stack ?? error.message) : String(error),
    };
  } finally {
    // The request carries field plaintexts, and decoded values are views of it.
    wipe(job.message);
  }
}

await loadSecretbox();
serveWorker<FieldWorkerKeys, FieldJob, FieldAnswer>({
  keys(message) {
    const previous = keys;
    try {
      keys = new MasterKeySet(message.keys, message.retiredKeyIds);
    } finally {
      wipe(...message.keys.map((entry) => entry.key));
    }
    previous?.dispose();
  },
  run(job) {
    const answer = run(job);
    return { value: answer, transfer: ownBuffer(answer.response) };
  },
  close() {
    keys?.dispose();
    keys = undefined;
  },
});
