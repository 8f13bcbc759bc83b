import { wipe } from "../crypto/wipe.js";
import { KmsEnvelopeError } from "../errors.js";
import type { MasterKeySet } from "../keys/master-key-set.js";
import type { Logger } from "../ops/logger.js";
import { WorkerPool, type WorkerPoolStats } from "../workers/worker-pool.js";
import {
  type FieldBatchLimits,
  type FieldMethod,
  MAX_RECORDS_PER_BATCH,
  tooManyFields,
} from "./field-batch.js";
import { joinResponses, splitRequest } from "./field-split.js";
import type { FieldAnswer, FieldJob, FieldWorkerKeys } from "./field-worker-protocol.js";
import type { RawOutcome } from "./grpc-server.js";

/** A field-service call's outcome, with the number of field values it carried. */
type FieldOutcome = RawOutcome & { fields: number; stale?: boolean };

// Below this many request bytes (about a hundred 100-byte fields) a call is not worth cutting:
// handing a part to a worker and back costs tens of microseconds.
const SPLIT_MIN_BYTES = 16 * 1024;

/**
 * Worker threads that run field-service batches (seal, open, lookup) off the event loop, so
 * kube-apiserver's KMS calls are answered while large batches run (issue 11). A Seal or Open
 * call large enough to be worth it is cut by records across the workers that are idle, and
 * the parts' answers joined into the very bytes one worker would have answered; each worker
 * holds its own copy of the master-key set, replaced and wiped when the keyring changes.
 */
export class FieldWorkerPool {
  readonly #pool: WorkerPool<FieldWorkerKeys, FieldJob, FieldAnswer>;
  readonly #limits: FieldBatchLimits;
  readonly #keys: { current: MasterKeySet };

  private constructor(
    pool: WorkerPool<FieldWorkerKeys, FieldJob, FieldAnswer>,
    limits: FieldBatchLimits,
    keys: { current: MasterKeySet },
  ) {
    this.#pool = pool;
    this.#limits = limits;
    this.#keys = keys;
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
    const keys = { current: options.keys };
    const { logger } = options;
    const pool = await WorkerPool.start<FieldWorkerKeys, FieldJob, FieldAnswer>({
      name: "field worker",
      script: new URL("./field-worker.js", import.meta.url),
      size: options.size,
      workerData: {
        maxFieldsPerRequest: options.limits.maxFieldsPerRequest,
        maxFieldsPerRecord: options.limits.maxFieldsPerRecord,
      } satisfies FieldBatchLimits,
      heapMb: options.heapMb,
      keys: () => {
        const copy = keys.current.copyForWorker();
        return { value: copy, transfer: copy.keys.map((entry) => entry.key.buffer as ArrayBuffer) };
      },
      overloaded: () =>
        new KmsEnvelopeError(
          "OVERLOADED",
          "every field worker is busy and the queue is full: retry later or raise --field-workers",
        ),
      closed: () =>
        new KmsEnvelopeError("DAEMON_UNREACHABLE", "the daemon is shutting down: retry"),
      onWorkerLost: ({ exitCode, error }) => {
        if (error !== undefined) logger.error({ err: error }, "field worker failed");
        else logger.error({ exitCode }, "field worker stopped; starting another");
      },
    });
    return new FieldWorkerPool(pool, options.limits, keys);
  }

  /** Sends every worker a copy of the new key set; jobs already running finish on the old one. */
  replaceKeys(keys: MasterKeySet): void {
    this.#keys.current = keys;
    this.#pool.replaceKeys();
  }

  /**
   * Runs one call, cut across the idle workers when it is large; failures come back in the
   * outcome, never thrown.
   */
  async run(method: FieldMethod, message: Uint8Array): Promise<FieldOutcome> {
    const parts =
      method === "Lookup" || message.byteLength < SPLIT_MIN_BYTES
        ? undefined
        : splitRequest(message, this.#pool.idle, MAX_RECORDS_PER_BATCH);
    if (parts === undefined)
      // A copy of its own, moved to the worker: the server zeroes the original when the call
      // ends, and a cloned view would copy the whole buffer it is cut from.
      return this.#runPart({ method, message: new Uint8Array(message), firstRecord: 0 });
    const outcomes = await Promise.all(parts.map((part) => this.#runPart({ method, ...part })));
    return this.#join(outcomes);
  }

  /** What the workers are doing, for metrics. */
  stats(): WorkerPoolStats {
    return this.#pool.stats();
  }

  /** Refuses calls from now on, and waits for every worker to wipe its keys and stop. */
  close(): Promise<void> {
    return this.#pool.close();
  }

  async #runPart(job: FieldJob): Promise<FieldOutcome> {
    let answer: FieldAnswer;
    try {
      answer = await this.#pool.run({ value: job, transfer: [job.message.buffer as ArrayBuffer] });
    } catch (error) {
      return { fields: 0, error };
    }
    const outcome: FieldOutcome = { fields: answer.fields, uid: answer.uid, stale: answer.stale };
    if (answer.response !== undefined) outcome.response = answer.response;
    else if (answer.refusal !== undefined)
      outcome.error = new KmsEnvelopeError(answer.refusal.code, answer.refusal.message);
    else outcome.error = new Error(answer.failure ?? "field worker gave no answer");
    return outcome;
  }

  /**
   * The outcome the whole call would have had in one worker. Its field budget is the call's:
   * parts within it each may add up past it. Otherwise the first failing part (in record order)
   * answers, naming the record as the whole call counts them.
   */
  #join(outcomes: readonly FieldOutcome[]): FieldOutcome {
    let fields = 0;
    for (const outcome of outcomes) fields += outcome.fields;
    if (fields > this.#limits.maxFieldsPerRequest)
      return { fields: 0, error: tooManyFields(this.#limits) };
    const failed = outcomes.find((outcome) => outcome.error !== undefined);
    if (failed !== undefined) return failed;
    const parts = outcomes.map((outcome) => ({
      response: outcome.response as Uint8Array,
      stale: outcome.stale,
    }));
    const response = joinResponses(parts);
    // An Open part holds opened plaintexts; only the joined answer is sent.
    wipe(...parts.map((part) => part.response));
    return {
      fields,
      uid: outcomes[0]?.uid,
      stale: outcomes.some((outcome) => outcome.stale === true),
      response,
    };
  }
}
