import { availableParallelism } from "node:os";
import type { EngineMetrics } from "../engine/engine-metrics.js";
import type { KmsV2Timing } from "../engine/kms/kms-v2-envelope.js";
import { type CountedMetrics, countRelayed } from "../engine/relayed-metrics.js";
import type { Writer } from "../engine/transformers/transformer.js";
import { type ErrorCode, KmsEnvelopeError } from "../errors.js";
import { WorkerPool } from "../workers/worker-pool.js";
import type { Posted } from "../workers/worker-protocol.js";
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
  /** Whether the layer has metrics: the worker then counts what its engine does per job. */
  readonly metered?: boolean;
}

type WithRecord<Item> = Item & { readonly recordId: string };

/**
 * Byte strings laid end to end in one buffer, and where each ends: one buffer moves between
 * threads where a thousand small ones would each be copied.
 */
interface Packed {
  bytes: Uint8Array;
  ends: Uint32Array;
}

/** Packs byte strings into one buffer of its own. */
export function pack(values: readonly Uint8Array[]): Packed {
  const ends = new Uint32Array(values.length);
  let size = 0;
  for (const [index, value] of values.entries()) {
    size += value.byteLength;
    ends[index] = size;
  }
  const bytes = new Uint8Array(size);
  for (const [index, value] of values.entries())
    bytes.set(value, index === 0 ? 0 : (ends[index - 1] as number));
  return { bytes, ends };
}

/** The packed byte strings, as views of the one buffer. */
export function unpack(packed: Packed): Uint8Array[] {
  return Array.from(packed.ends, (end, index) =>
    packed.bytes.subarray(index === 0 ? 0 : (packed.ends[index - 1] as number), end),
  );
}

/** The buffers of a job or answer to move with it. */
export function buffersOf(...views: (ArrayBufferView | undefined)[]): ArrayBuffer[] {
  return views.flatMap((view) => (view === undefined ? [] : [view.buffer as ArrayBuffer]));
}

/** Part of one batch of one resource, for one worker, field by field in columns. */
export type EngineJob = {
  resource: string;
  paths: string[];
  recordIds: string[];
} & ({ op: "seal"; values: Packed } | { op: "open"; texts: string[]; wheres: string[] });

/** A part's answer, or the failure a KmsEnvelopeError described (rebuilt on this side). */
export interface EngineAnswer {
  /** Seal: the text to store of each field. */
  texts?: string[];
  /** Open: the plaintext of each field, and whether it is stale (1) or not (0). */
  plaintexts?: Packed;
  stale?: Uint8Array;
  /** Who wrote each field: an index into `writers`, the few distinct ones of the part. */
  writers?: Writer[];
  writerOf?: Uint16Array;
  refusal?: { code: ErrorCode; message: string };
  failure?: string;
  /** What the worker's engine counted for this part, failed or not. */
  counted?: CountedMetrics;
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
  readonly #metrics: EngineMetrics | undefined;

  private constructor(
    pool: WorkerPool<never, EngineJob, EngineAnswer>,
    size: number,
    metrics: EngineMetrics | undefined,
  ) {
    this.#pool = pool;
    this.#size = size;
    this.#metrics = metrics;
  }

  /**
   * Starts `size` workers ("auto": one per core) and resolves once each engine has started.
   * What their engines count during each part is counted in `metrics`, as the layer's own
   * engine counts there.
   */
  static async start(
    size: number | "auto",
    sources: EngineWorkerSources,
    metrics?: EngineMetrics,
  ): Promise<EngineWorkers> {
    const count = size === "auto" ? availableParallelism() : size;
    const pool = await WorkerPool.start<never, EngineJob, EngineAnswer>({
      name: "field layer worker",
      script: new URL("./engine-worker.js", import.meta.url),
      size: count,
      workerData: { ...sources, metered: metrics !== undefined } satisfies EngineWorkerSources,
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
    return new EngineWorkers(pool, count, metrics);
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
    const answers = await this.#run(items, (part) => {
      const values = pack(part.map((item) => item.value));
      return {
        value: { op: "seal", resource, ...columns(part), values },
        transfer: buffersOf(values.bytes, values.ends),
      };
    });
    return answers.flatMap((answer) =>
      (answer.texts ?? []).map((text, index) => ({ text, writer: writerOf(answer, index) })),
    );
  }

  /** Opens the items on the workers, answers in the items' order; all or nothing. */
  async open(
    resource: string,
    items: readonly WithRecord<EngineOpenItem>[],
  ): Promise<EngineOpened[]> {
    const answers = await this.#run(items, (part) => ({
      value: {
        op: "open",
        resource,
        ...columns(part),
        texts: part.map((item) => item.value),
        wheres: part.map((item) => item.where),
      },
    }));
    return answers.flatMap((answer) =>
      unpack(answer.plaintexts ?? { bytes: new Uint8Array(), ends: new Uint32Array() }).map(
        (bytes, index) => ({
          bytes,
          stale: answer.stale?.[index] === 1,
          writer: writerOf(answer, index),
        }),
      ),
    );
  }

  /** Stops the workers, which zero their engines' keys. */
  close(): Promise<void> {
    return this.#pool.close();
  }

  async #run<Item>(
    items: readonly Item[],
    job: (part: Item[]) => Posted<EngineJob>,
  ): Promise<EngineAnswer[]> {
    const parts = Math.max(1, Math.min(this.#size, Math.floor(items.length / MIN_PART_FIELDS)));
    const size = Math.ceil(items.length / parts);
    const settled = await Promise.allSettled(
      Array.from({ length: parts }, (_, part) =>
        this.#pool.run(job(items.slice(part * size, (part + 1) * size))),
      ),
    );
    const metrics = this.#metrics;
    if (metrics !== undefined)
      for (const result of settled)
        if (result.status === "fulfilled" && result.value.counted !== undefined)
          countRelayed(metrics, result.value.counted);
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

function columns(items: readonly { path: string; recordId: string }[]) {
  return { paths: items.map((item) => item.path), recordIds: items.map((item) => item.recordId) };
}

function writerOf(answer: EngineAnswer, index: number): Writer {
  return (answer.writers ?? [])[answer.writerOf?.[index] ?? 0] as Writer;
}
