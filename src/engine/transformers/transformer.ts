import { wipe } from "../../crypto/wipe.js";

/**
 * One layer of Kubernetes' storage transformation (`value.Transformer`): bytes in, bytes out,
 * bound to the authenticated data of where they are stored (the etcd key, or for application
 * fields `<resource>/<field path>/<record id>`).
 */

/** Which provider and key wrote a stored value: public facts, never key material. */
export interface Writer {
  /** "identity", "aesgcm", "aescbc", "secretbox", "kms:v1:<name>" or "kms:v2:<name>". */
  readonly provider: string;
  /** The key name (aes*, secretbox), the plugin's key id (kms v2), or "" (identity, kms v1). */
  readonly keyId: string;
}

export interface Stored {
  readonly data: Uint8Array;
  readonly writer: Writer;
}

export interface Read {
  readonly plaintext: Uint8Array;
  /** True when the value should be rewritten: a later provider or key, or an old kms key id. */
  readonly stale: boolean;
  readonly writer: Writer;
}

export interface Transformer {
  toStorage(plaintext: Uint8Array, authenticatedData: Uint8Array): Promise<Stored>;
  fromStorage(data: Uint8Array, authenticatedData: Uint8Array): Promise<Read>;
  /** Who would write a value now (for kms v2 this needs a healthy plugin state). */
  currentWriter(): Writer;
}

/**
 * A transformer over one key: keeps its own copy of the key and the writer it reports, and
 * zeroes the copy when dropped (a cache eviction, an engine closed), as the AWS Encryption
 * SDK's materials cache does on dispose.
 */
export abstract class KeyedTransformer implements Transformer {
  readonly #key: Uint8Array;
  readonly #writer: Writer;
  #disposed = false;

  constructor(key: Uint8Array, writer: Writer) {
    this.#key = Uint8Array.from(key);
    this.#writer = writer;
  }

  abstract toStorage(plaintext: Uint8Array, authenticatedData: Uint8Array): Promise<Stored>;
  abstract fromStorage(data: Uint8Array, authenticatedData: Uint8Array): Promise<Read>;

  currentWriter(): Writer {
    return this.#writer;
  }

  /** True once dispose() has zeroed the key: the transformer must not be used any more. */
  get disposed(): boolean {
    return this.#disposed;
  }

  /** Zeroes this transformer's copy of the key. */
  dispose(): void {
    this.#disposed = true;
    wipe(this.#key);
  }

  /** The key, for the subclass's cipher; refused once disposed, never an all-zero key. */
  protected key(): Uint8Array {
    if (this.#disposed)
      throw new Error(`the ${this.#writer.provider} transformer was disposed: its key is wiped`);
    return this.#key;
  }
}
