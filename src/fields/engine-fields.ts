import { decodeCanonicalBase64 } from "../crypto/canonical-base64.js";
import type { Transformer, Writer } from "../engine/transformers/transformer.js";
import { MalformedCiphertextError } from "../errors.js";

// The engine route's per-field work, shared by the field layer's own thread and its workers.

/** A field to seal through the engine: its path, and its value as bytes. */
export interface EngineSealItem {
  readonly path: string;
  readonly value: Uint8Array;
}

/** A field to open through the engine: its path, the stored text, and how errors name it. */
export interface EngineOpenItem {
  readonly path: string;
  readonly value: string;
  readonly where: string;
}

/** A sealed field: the text to store (base64 of the engine's bytes) and who wrote it. */
export interface EngineSealed {
  readonly text: string;
  readonly writer: Writer;
}

/** An opened field: its bytes, whether to rewrap it, and who wrote it. */
export interface EngineOpened {
  readonly bytes: Uint8Array;
  readonly stale: boolean;
  readonly writer: Writer;
}

/** Authenticated data binding an engine-encrypted value to its place (the field map README section). */
function fieldAuthenticatedData(resource: string, path: string, recordId: string): Uint8Array {
  return Buffer.from(`${resource}/${path}/${recordId}`, "utf8");
}

/**
 * `run` on every item, in order, and `finish` on each result. Transformers whose keys are in
 * process answer at once, so a batch of them costs no promise per field; the rest are awaited
 * together. The first failure fails the batch, once every started call has settled (none is
 * left to reject unobserved).
 */
async function eachField<Item, Done, Result>(
  items: readonly Item[],
  run: (item: Item) => Done | Promise<Done>,
  finish: (done: Done) => Result,
): Promise<Result[]> {
  const results: Result[] = new Array(items.length);
  const pending: Promise<void>[] = [];
  try {
    for (const [index, item] of items.entries()) {
      const done = run(item);
      if (done instanceof Promise)
        pending.push(
          done.then((value) => {
            results[index] = finish(value);
          }),
        );
      else results[index] = finish(done);
    }
  } catch (error) {
    await Promise.allSettled(pending);
    throw error;
  }
  await Promise.all(pending);
  return results;
}

/** Seals each item of `resource` with `transformer`, bound to its record id; all or nothing. */
export function sealEngineFields<Item extends EngineSealItem>(
  transformer: Transformer,
  resource: string,
  items: readonly Item[],
  recordId: (item: Item) => string,
): Promise<EngineSealed[]> {
  return eachField(
    items,
    (item) => {
      const where = fieldAuthenticatedData(resource, item.path, recordId(item));
      return (
        transformer.toStorageSync?.(item.value, where) ?? transformer.toStorage(item.value, where)
      );
    },
    (stored) => ({
      // A view, not a copy: the bytes are only read, once, to encode them.
      text: Buffer.from(
        stored.data.buffer,
        stored.data.byteOffset,
        stored.data.byteLength,
      ).toString("base64"),
      writer: stored.writer,
    }),
  );
}

/** Opens each stored item of `resource` with `transformer`, bound to its record id; all or nothing. */
export function openEngineFields<Item extends EngineOpenItem>(
  transformer: Transformer,
  resource: string,
  items: readonly Item[],
  recordId: (item: Item) => string,
): Promise<EngineOpened[]> {
  return eachField(
    items,
    (item) => {
      const data = decodeCanonicalBase64(item.value);
      if (data === undefined)
        throw new MalformedCiphertextError(`${item.where} is not standard base64`);
      const where = fieldAuthenticatedData(resource, item.path, recordId(item));
      return transformer.fromStorageSync?.(data, where) ?? transformer.fromStorage(data, where);
    },
    (read) => ({ bytes: read.plaintext, stale: read.stale, writer: read.writer }),
  );
}
