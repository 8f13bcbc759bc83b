import { wipe } from "../../crypto/wipe.js";

/**
 * One layer of Kubernetes' storage transformation (`value.Transformer`): bytes in, bytes out,
 * bound to the authenticated data of where they are stored (the etcd key, or for application
 * fields `<resource>/<field path>/<record id>`).
 */

/** Which provider and key wrote a stored value: public facts, never key material. */
export interface Writer {
  /** `identity`, `aesgcm`, `aescbc`, `secretbox`, `kms:v1:<name>` or `kms:v2:<name>`. */
  readonly provider: string;
  /**
   * The key name (aesgcm, aescbc, secretbox), the plugin's key id (kms v2), or `""` (identity,
   * kms v1).
   */
  readonly keyId: string;
}

/** The result of encrypting a value for storage. */
export interface Stored {
  /** The bytes to store, starting with the writer's `k8s:enc:…:` prefix (identity: none). */
  readonly data: Uint8Array;
  /** Who wrote them. */
  readonly writer: Writer;
}

/** The result of decrypting a stored value. */
export interface Read {
  /** The decrypted value; the caller owns it. */
  readonly plaintext: Uint8Array;
  /** True when the value should be rewritten: a later provider or key, or an old kms key id. */
  readonly stale: boolean;
  /** Who wrote the value. */
  readonly writer: Writer;
}

/**
 * Encrypts and decrypts the values of one resource, as its EncryptionConfiguration rule says.
 * Safe for concurrent calls; errors never carry keys or plaintext.
 */
export interface Transformer {
  /**
   * Encrypts with the first provider (and its first key).
   *
   * @param plaintext - The value; not modified, not kept.
   * @param authenticatedData - Where the value is stored; the same bytes must be given to read
   * it back (ignored by aescbc and secretbox, as upstream).
   * @throws `KMS_PLUGIN_FAILED` when a kms provider writes and its plugin is not usable.
   */
  toStorage(plaintext: Uint8Array, authenticatedData: Uint8Array): Promise<Stored>;
  /**
   * Decrypts with the provider whose prefix the value carries; a value without a known prefix is
   * read by identity when the rule lists it.
   *
   * @param data - The stored bytes.
   * @param authenticatedData - The bytes given when the value was stored.
   * @throws `MALFORMED_CIPHERTEXT` (no provider of the rule wrote it, or it is truncated),
   * `DECRYPTION_FAILED` (authentication failed; the message never says why) or
   * `KMS_PLUGIN_FAILED` (a plugin call failed).
   */
  fromStorage(data: Uint8Array, authenticatedData: Uint8Array): Promise<Read>;
  /**
   * Who would write a value now, without encrypting anything.
   *
   * @throws `KMS_PLUGIN_FAILED` for a kms v2 provider without a usable seed (no healthy Status
   * yet, or the seed expired).
   */
  currentWriter(): Writer;
  /**
   * toStorage without a promise, for transformers whose keys are all in process (identity,
   * aescbc, aesgcm, secretbox): batches of fields go through it without one promise per
   * value. Absent, or undefined, when writing needs a plugin; then call toStorage.
   *
   * @throws As toStorage.
   */
  toStorageSync?(plaintext: Uint8Array, authenticatedData: Uint8Array): Stored | undefined;
  /**
   * fromStorage without a promise; absent, or undefined, when reading this value needs a
   * plugin (then call fromStorage).
   *
   * @throws As fromStorage.
   */
  fromStorageSync?(data: Uint8Array, authenticatedData: Uint8Array): Read | undefined;
}

/**
 * A transformer that can leave room in front of the bytes it stores, so that the prefixes of
 * the lists around it are written into that room instead of each copying the value behind
 * theirs: one buffer per value, however deep the lists nest.
 */
export interface HeadroomWriter {
  /**
   * toStorageSync with `headroom` zero bytes in front of the stored bytes, for the caller's
   * prefix; undefined as toStorageSync.
   */
  toStorageSyncAfter(
    headroom: number,
    plaintext: Uint8Array,
    authenticatedData: Uint8Array,
  ): Stored | undefined;
}

/** Whether `transformer` can leave room for a prefix (see {@link HeadroomWriter}). */
export function writesAfterHeadroom(
  transformer: Transformer,
): transformer is Transformer & HeadroomWriter {
  return typeof (transformer as Partial<HeadroomWriter>).toStorageSyncAfter === "function";
}

/** `stored` moved behind `headroom` zero bytes: for writers that cannot leave the room. */
export function withHeadroom(headroom: number, stored: Stored | undefined): Stored | undefined {
  if (stored === undefined || headroom === 0) return stored;
  const data = new Uint8Array(headroom + stored.data.length);
  data.set(stored.data, headroom);
  return { data, writer: stored.writer };
}

/**
 * A transformer over one key: keeps its own copy of the key and the writer it reports, and
 * zeroes the copy when dropped (a cache eviction, an engine closed), as the AWS Encryption
 * SDK's materials cache does on dispose.
 */
export abstract class KeyedTransformer implements Transformer, HeadroomWriter {
  readonly #key: Uint8Array;
  readonly #writer: Writer;
  #disposed = false;

  constructor(key: Uint8Array, writer: Writer) {
    this.#key = Uint8Array.from(key);
    this.#writer = writer;
  }

  abstract toStorageSync(plaintext: Uint8Array, authenticatedData: Uint8Array): Stored;
  abstract fromStorageSync(data: Uint8Array, authenticatedData: Uint8Array): Read;

  /** Ciphers that can write behind the room override this instead of copying. */
  toStorageSyncAfter(
    headroom: number,
    plaintext: Uint8Array,
    authenticatedData: Uint8Array,
  ): Stored {
    return withHeadroom(headroom, this.toStorageSync(plaintext, authenticatedData)) as Stored;
  }

  async toStorage(plaintext: Uint8Array, authenticatedData: Uint8Array): Promise<Stored> {
    return this.toStorageSync(plaintext, authenticatedData);
  }

  async fromStorage(data: Uint8Array, authenticatedData: Uint8Array): Promise<Read> {
    return this.fromStorageSync(data, authenticatedData);
  }

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
