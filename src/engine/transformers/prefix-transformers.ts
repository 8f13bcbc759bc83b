import { MalformedCiphertextError } from "../../errors.js";
import type { Read, Stored, Transformer, Writer } from "./transformer.js";

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

/**
 * Kubernetes' `PrefixTransformers`: the first entry writes (with its prefix); a read goes to
 * the first entry whose prefix matches and is stale unless that is the first entry. An entry
 * with an empty prefix (identity) that fails is skipped rather than final, so plaintext and
 * encrypted data can coexist during a migration in either direction. Nesting one list inside
 * another gives the provider list with, inside each provider, its list of named keys.
 */
export class PrefixTransformers implements Transformer {
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

  async fromStorage(data: Uint8Array, authenticatedData: Uint8Array): Promise<Read> {
    let skipped: unknown;
    for (const [index, entry] of this.#entries.entries()) {
      if (!startsWith(data, entry.prefix)) continue;
      const payload = data.subarray(entry.prefix.length);
      let read: Read;
      try {
        read = await entry.transformer.fromStorage(payload, authenticatedData);
      } catch (error) {
        if (entry.prefix.length !== 0) throw error;
        skipped = error;
        continue;
      }
      return { ...read, stale: read.stale || index !== 0 };
    }
    // Only identity matched and it refused: its message (encrypted data) is the useful one.
    if (skipped !== undefined) throw skipped;
    throw new MalformedCiphertextError(
      "no matching prefix found: no provider in the configuration wrote this value",
    );
  }

  currentWriter(): Writer {
    return this.#first().transformer.currentWriter();
  }

  #first(): PrefixedTransformer {
    // The constructor guarantees an entry.
    return this.#entries[0] as PrefixedTransformer;
  }
}
