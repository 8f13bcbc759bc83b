import { Registry } from "prom-client";
import { EngineMetrics } from "./engine-metrics.js";
import type { Writer } from "./transformers/transformer.js";

// A worker thread's engine cannot reach the application's registry, which lives on the thread
// that opened the field layer: it counts into a recorder, and the answer to each job carries
// what it counted there.

type Operation = "to_storage" | "from_storage";

/** What a worker thread's engine counted during one job, to be counted where the metrics are. */
export interface CountedMetrics {
  /** Values transformed: operation, provider, result, and how many. */
  readonly transformations: [Operation, string, string, number][];
  /** Values of kms v2 providers: operation, writer, and how many. */
  readonly keyIdUses: [Operation, Writer, number][];
  /** Plugin calls: provider, method, code and seconds of each. */
  readonly kmsCalls: [string, string, string, number][];
}

/**
 * The metrics a worker thread's engine reports into. Only what a job does is kept: besides jobs,
 * a worker's engine only checks its plugins' Status, as the layer's own engine does for the
 * same providers, and keeping that between jobs would grow without bound. Provider gauges are
 * left to the layer's own engine for the same reason.
 */
export class MetricsRecorder extends EngineMetrics {
  #recording = false;
  readonly #transformations = new Map<string, [Operation, string, string, number]>();
  readonly #keyIdUses = new Map<string, [Operation, Writer, number]>();
  #kmsCalls: [string, string, string, number][] = [];

  constructor() {
    super(new Registry());
  }

  /** Starts keeping what the engine reports, for one job. */
  begin(): void {
    this.#recording = true;
  }

  /** What the engine reported since `begin`; stops keeping it. */
  take(): CountedMetrics {
    this.#recording = false;
    const counted: CountedMetrics = {
      transformations: [...this.#transformations.values()],
      keyIdUses: [...this.#keyIdUses.values()],
      kmsCalls: this.#kmsCalls,
    };
    this.#transformations.clear();
    this.#keyIdUses.clear();
    this.#kmsCalls = [];
    return counted;
  }

  override transformation(operation: Operation, provider: string, result: string): void {
    if (!this.#recording) return;
    const key = `${operation}\0${provider}\0${result}`;
    const entry = this.#transformations.get(key);
    if (entry === undefined) this.#transformations.set(key, [operation, provider, result, 1]);
    else entry[3] += 1;
  }

  override kmsKeyIdUse(operation: Operation, writer: Writer): void {
    if (!this.#recording) return;
    const key = `${operation}\0${writer.provider}\0${writer.keyId}`;
    const entry = this.#keyIdUses.get(key);
    if (entry === undefined)
      this.#keyIdUses.set(key, [operation, { provider: writer.provider, keyId: writer.keyId }, 1]);
    else entry[2] += 1;
  }

  override kmsCall(provider: string, method: string, code: string, seconds: number): void {
    // A Status check that happens to fall within a job is the worker's timer, not the job's.
    if (this.#recording && method !== "Status")
      this.#kmsCalls.push([provider, method, code, seconds]);
  }

  override kmsStatusKeyId(): void {}

  override track(): void {}

  override forget(): void {}
}

/** Counts in `metrics` what a worker's engine counted during a job. */
export function countRelayed(metrics: EngineMetrics, counted: CountedMetrics): void {
  for (const [operation, provider, result, times] of counted.transformations)
    for (let time = 0; time < times; time++) metrics.transformation(operation, provider, result);
  for (const [operation, writer, times] of counted.keyIdUses)
    for (let time = 0; time < times; time++) metrics.kmsKeyIdUse(operation, writer);
  for (const [provider, method, code, seconds] of counted.kmsCalls)
    metrics.kmsCall(provider, method, code, seconds);
}
