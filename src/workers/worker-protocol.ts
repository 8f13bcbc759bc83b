/** What a pool sends its workers: a key set (moved), a job, or the request to stop. */
export type ToWorker<Keys, Job> =
  | { kind: "keys"; keys: Keys }
  | { kind: "job"; id: number; job: Job }
  | { kind: "close" };

/** What a worker sends back: `ready` once it has loaded, then one `done` per job. */
export type FromWorker<Answer> = { kind: "ready" } | { kind: "done"; id: number; answer: Answer };

/** A value to post and the buffers moved (not copied) along with it. */
export interface Posted<Value> {
  readonly value: Value;
  readonly transfer?: readonly ArrayBuffer[];
}

/**
 * The buffer of `bytes` when moving it moves nothing else: a view of part of a buffer (one
 * cut from Node's shared pool, say) must be copied instead, so it gives none.
 */
export function ownBuffer(bytes: Uint8Array | undefined): ArrayBuffer[] {
  return bytes !== undefined &&
    bytes.byteOffset === 0 &&
    bytes.byteLength === bytes.buffer.byteLength &&
    bytes.buffer instanceof ArrayBuffer
    ? [bytes.buffer]
    : [];
}
