import { availableParallelism } from "node:os";
import type { KmsV2Timing } from "../engine/kms/kms-v2-envelope.js";
import { type ErrorCode, KmsEnvelopeError } from "../errors.js";
import { WorkerPool } from "../workers/worker-pool.js";
import type {
  EngineOpened,
  EngineOpenItem,
  EngineSealed,
  EngineSealItem,
} from "./engine-fields.js";

/** What a worker needs to start the same engine as the layer's. */
export interface EngineWorkerSources {
  readonly encryptionConfigPath: string;
  readonly allowKmsV1?: boolean;
  readonly reloadIntervalMs?: number;
  readonly kmsV2Timing?: KmsV2Timing;
}

type WithRecord<Item> = Item & { readonly recordId: string };

/** Part of one batch of one resource, for one worker. */
export type EngineJob =
  | { op: "seal"; resource: string; items: WithRecord<EngineSealItem>[] }
  | { op: "open"; resource: string; items: WithRecord<EngineOpenItem>[] };

/** A part's answer, or the failure a KmsEnvelopeError described (rebuilt on this side). */
export interface EngineAnswer {
  sealed?: EngineSealed[];
  opened?: EngineOpened[];
  refusal?: { code: ErrorCode; message: string };
  failure?: string;
}

// Below this many fields a batch stays on the caller's thread: handing a part to a worker and
// back costs more than sealing a few hundred small values.
const MIN_POOLED_FIELDS = 500;
// Parts smaller than this are not worth a worker of their own.
const MIN_PART_FIELDS = 250;

/**
 * Worker threads for the field layer's engine route: a batch of at least 500 fields is cut
 * into consecutive parts sealed or opened on several cores at once, and joined back in order;
 * smaller ones stay on the caller's thread. Each worker runs its own engine from the same
 * EncryptionConfiguration (following its edits when the layer does), so keys never cross
 * threads.
 */
export class EngineWorkers {
  readonly #pool: WorkerPool<never, EngineJob, EngineAnswer>;
  readonly #size: number;

  private constructor(pool: WorkerPool<never, EngineJob, EngineAnswer>, size: number) {
    this.#pool = pool;
    this.#size = size;
  }

  /** Starts `size` workers ("auto": one per core) and resolves once each engine has started. */
  static async start(size: number | "auto", sources: EngineWorkerSources): Promise<EngineWorkers> {
    const count = size === "auto" ? availableParallelism() : size;
    const pool = await WorkerPool.start<never, EngineJob, EngineAnswer>({
      name: "field layer worker",
      script: new URL("./engine-worker.js", import.meta.url),
      size: count,
      workerData: sources,
      overloaded: () =>
        new KmsEnvelopeError(
          "OVERLOADED",
          "every field layer worker is busy and the queue is full: retry later, or open the field layer with more workers",
        ),
      closed: () =>
        new KmsEnvelopeError(
          "INVALID_REQUEST",
          "the field layer is closed: open another with openFieldLayer",
        ),
    });
    return new EngineWorkers(pool, count);
  }

  /** Whether a batch of this many fields goes to the workers. */
  takes(fields: number): boolean {
    return fields >= MIN_POOLED_FIELDS;
  }

  /** Seals the items on the workers, answers in the items' order; all or nothing. */
  async seal(
    resource: string,
    items: readonly WithRecord<EngineSealItem>[],
  ): Promise<EngineSealed[]> {
    const answers = await this.#run(items, (part) => ({ op: "seal", resource, items: part }));
    return answers.flatMap((answer) => answer.sealed ?? []);
  }

  /** Opens the items on the workers, answers in the items' order; all or nothing. */
  async open(
    resource: string,
    items: readonly WithRecord<EngineOpenItem>[],
  ): Promise<EngineOpened[]> {
    const answers = await this.#run(items, (part) => ({ op: "open", resource, items: part }));
    return answers.flatMap((answer) => answer.opened ?? []);
  }

  /** Stops the workers, which zero their engines' keys. */
  close(): Promise<void> {
    return this.#pool.close();
  }

  async #run<Item>(
    items: readonly Item[],
    job: (part: Item[]) => EngineJob,
  ): Promise<EngineAnswer[]> {
    const parts = Math.max(1, Math.min(this.#size, Math.floor(items.length / MIN_PART_FIELDS)));
    const size = Math.ceil(items.length / parts);
    const settled = await Promise.allSettled(
      Array.from({ length: parts }, (_, part) =>
        this.#pool.run({ value: job(items.slice(part * size, (part + 1) * size)) }),
      ),
    );
    // The first failure in item order is the batch's, as on the caller's thread.
    for (const result of settled) {
      if (result.status === "rejected") throw result.reason;
      const { refusal, failure } = result.value;
      if (refusal !== undefined) throw new KmsEnvelopeError(refusal.code, refusal.message);
      if (failure !== undefined) throw new Error(failure);
    }
    return settled.map((result) => (result as PromiseFulfilledResult<EngineAnswer>).value);
  }
}
