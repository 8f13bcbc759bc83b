import { MalformedCiphertextError } from "../../errors.js";
import {
  type HeadroomWriter,
  type Read,
  type Stored,
  type Transformer,
  type Writer,
  withHeadroom,
  writesAfterHeadroom,
} from "./transformer.js";

export interface PrefixedTransformer {
  readonly prefix: Uint8Array;
  readonly transformer: Transformer;
}

function startsWith(data: Uint8Array, prefix: Uint8Array): boolean {
  if (data.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (data[i] !== prefix[i]) return false;
  return true;
}

function concat(prefix: Uint8Array, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(prefix.length + data.length);
  out.set(prefix);
  out.set(data, prefix.length);
  return out;
}

/** A read by a later entry than the first is stale: the value should be rewritten. */
function staleUnlessFirst(read: Read, index: number): Read {
  return index === 0 || read.stale ? read : { ...read, stale: true };
}

/** Why no entry read a value: only identity matched and refused it (its message, encrypted
 * data, is the useful one), or no prefix matched. */
function unread(skipped: unknown): unknown {
  return (
    skipped ??
    new MalformedCiphertextError(
      "no matching prefix found: no provider in the configuration wrote this value",
    )
  );
}

/**
 * Kubernetes' `PrefixTransformers`: the first entry writes (with its prefix); a read goes to
 * the first entry whose prefix matches and is stale unless that is the first entry. An entry
 * with an empty prefix (identity) that fails is skipped rather than final, so plaintext and
 * encrypted data can coexist during a migration in either direction. Nesting one list inside
 * another gives the provider list with, inside each provider, its list of named keys.
 */
export class PrefixTransformers implements Transformer, HeadroomWriter {
  readonly #entries: readonly PrefixedTransformer[];

  constructor(entries: readonly PrefixedTransformer[]) {
    if (entries.length === 0) throw new RangeError("a prefix transformer list needs an entry");
    this.#entries = entries;
  }

  async toStorage(plaintext: Uint8Array, authenticatedData: Uint8Array): Promise<Stored> {
    const first = this.#first();
    const stored = await first.transformer.toStorage(plaintext, authenticatedData);
    return { data: concat(first.prefix, stored.data), writer: stored.writer };
  }

  toStorageSync(plaintext: Uint8Array, authenticatedData: Uint8Array): Stored | undefined {
    return this.toStorageSyncAfter(0, plaintext, authenticatedData);
  }

  toStorageSyncAfter(
    headroom: number,
    plaintext: Uint8Array,
    authenticatedData: Uint8Array,
  ): Stored | undefined {
    const { prefix, transformer } = this.#first();
    const room = headroom + prefix.length;
    const stored = writesAfterHeadroom(transformer)
      ? transformer.toStorageSyncAfter(room, plaintext, authenticatedData)
      : withHeadroom(room, transformer.toStorageSync?.(plaintext, authenticatedData));
    stored?.data.set(prefix, headroom);
    return stored;
  }

  async fromStorage(data: Uint8Array, authenticatedData: Uint8Array): Promise<Read> {
    let skipped: unknown;
    for (let index = this.#next(data, 0); index >= 0; index = this.#next(data, index + 1)) {
      const { prefix, transformer } = this.#entries[index] as PrefixedTransformer;
      const payload = data.subarray(prefix.length);
      let read: Read;
      try {
        read =
          transformer.fromStorageSync?.(payload, authenticatedData) ??
          (await transformer.fromStorage(payload, authenticatedData));
      } catch (error) {
        if (prefix.length !== 0) throw error;
        skipped = error;
        continue;
      }
      return staleUnlessFirst(read, index);
    }
    throw unread(skipped);
  }

  fromStorageSync(data: Uint8Array, authenticatedData: Uint8Array): Read | undefined {
    let skipped: unknown;
    for (let index = this.#next(data, 0); index >= 0; index = this.#next(data, index + 1)) {
      const { prefix, transformer } = this.#entries[index] as PrefixedTransformer;
      let read: Read | undefined;
      try {
        read = transformer.fromStorageSync?.(data.subarray(prefix.length), authenticatedData);
      } catch (error) {
        if (prefix.length !== 0) throw error;
        skipped = error;
        continue;
      }
      // This entry needs its plugin: fromStorage reads the value.
      return read && staleUnlessFirst(read, index);
    }
    throw unread(skipped);
  }

  currentWriter(): Writer {
    return this.#first().transformer.currentWriter();
  }

  /** The first entry from `from` on whose prefix the value carries; -1 when none does. */
  #next(data: Uint8Array, from: number): number {
    for (let index = from; index < this.#entries.length; index++)
      if (startsWith(data, (this.#entries[index] as PrefixedTransformer).prefix)) return index;
    return -1;
  }

  #first(): PrefixedTransformer {
    // The constructor guarantees an entry.
    return this.#entries[0] as PrefixedTransformer;
  }
}
