import { randomFillSync, randomUUID } from "node:crypto";
import { LRUCache } from "lru-cache";
import { errorMessage } from "../../errors.js";
import type { CallObserver } from "../../wire/unary-connection.js";
import { AesGcmTransformer } from "../transformers/aes-gcm.js";
import { ExtendedNonceGcmTransformer, SEED_BYTES } from "../transformers/aes-gcm-extended-nonce.js";
import type {
  KeyedTransformer,
  Read,
  Stored,
  Transformer,
  Writer,
} from "../transformers/transformer.js";
import { dekSourceCacheKey } from "./dek-source-cache-key.js";
import {
  DekSourceType,
  decodeEncryptedObject,
  type EncryptedObject,
  encodeEncryptedObject,
} from "./encrypted-object.js";
import { keyIdProblem } from "./kms-v2-rules.js";
import { KmsV2SeedState, refuse, type WriteSeed } from "./kms-v2-seed-state.js";
import { KmsV2Plugin } from "./plugin-client.js";

/**
 * Timing of a kms v2 provider toward its plugin; kube-apiserver's (1 min, 10 s, 3 min) unless
 * given (tests shorten it). All three are required when given.
 */
export interface KmsV2Timing {
  /** Status poll period while healthy (1 min). */
  readonly healthyPollMs: number;
  /** Re-poll period after a failed check, until one succeeds (10 s). */
  readonly unhealthyPollMs: number;
  /** A write seed stays usable this long after the last healthy check (3 min). */
  readonly writeTtlMs: number;
}

const KUBE_APISERVER_TIMING: KmsV2Timing = {
  healthyPollMs: 60_000,
  unhealthyPollMs: 10_000,
  writeTtlMs: 180_000,
};

interface KmsV2EnvelopeOptions {
  readonly name: string;
  readonly socketPath: string;
  readonly timeoutMs: number;
  readonly timing?: KmsV2Timing;
  /** Distinct stored DEK sources whose decryption is kept (default 1000). */
  readonly cacheSize?: number;
  /** Told about every plugin call (method, gRPC code, seconds). */
  readonly observe?: CallObserver;
  /** Told the key id of every Status answer whose key id is valid, healthy or not. */
  readonly observeStatusKeyId?: (keyId: string) => void;
}

/**
 * The `kms` apiVersion v2 provider as kube-apiserver runs it: one Status check at start and
 * then on a timer; a new 32-byte seed encrypted by the plugin (one Encrypt call) at start and
 * whenever Status reports a new key id; every write derives a one-use key from that seed.
 * Reads decrypt each distinct stored seed once (one Decrypt call) and keep it in a bounded
 * cache. Writes coast on the last seed for `writeTtlMs` after the last healthy check, then
 * fail until the plugin is healthy again; reads never expire. The rules live in
 * KmsV2SeedState; this class is the timer and the plugin calls around them. Seeds dropped
 * (replaced, evicted, closed) are zeroed.
 */
export class KmsV2Envelope implements Transformer {
  readonly #name: string;
  readonly #provider: string;
  readonly #plugin: KmsV2Plugin;
  readonly #timing: KmsV2Timing;
  readonly #observeStatusKeyId: ((keyId: string) => void) | undefined;
  readonly #sources: LRUCache<string, Promise<KeyedTransformer>>;
  readonly #state: KmsV2SeedState;
  #lastProblem: string | undefined = "no Status check has completed yet";
  #check: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  private constructor(options: KmsV2EnvelopeOptions) {
    this.#name = options.name;
    this.#provider = `kms:v2:${options.name}`;
    this.#plugin = new KmsV2Plugin(options);
    this.#timing = options.timing ?? KUBE_APISERVER_TIMING;
    this.#observeStatusKeyId = options.observeStatusKeyId;
    this.#state = new KmsV2SeedState(options.name, this.#timing.writeTtlMs);
    this.#sources = new LRUCache({
      max: options.cacheSize ?? 1000,
      dispose: (pending) => {
        pending.then(
          (transformer) => transformer.dispose(),
          () => undefined,
        );
      },
    });
  }

  /** Starts the provider: one inline check (a failure is kept, not thrown), then the timer. */
  static async start(options: KmsV2EnvelopeOptions): Promise<KmsV2Envelope> {
    const envelope = new KmsV2Envelope(options);
    await envelope.check();
    return envelope;
  }

  /** Runs a Status check now (concurrent callers share one); never rejects. */
  check(): Promise<void> {
    if (this.#check === undefined) {
      this.#check = this.#runCheck().finally(() => {
        this.#check = undefined;
        this.#schedule();
      });
    }
    return this.#check;
  }

  /** The result of the last check: what a /readyz kms-provider check reports. */
  health(): { ok: boolean; detail: string } {
    if (this.#lastProblem === undefined) return { ok: true, detail: "ok" };
    return { ok: false, detail: this.#lastProblem };
  }

  async toStorage(plaintext: Uint8Array, authenticatedData: Uint8Array): Promise<Stored> {
    const seed = this.#state.forWrite(Date.now(), this.#lastProblem);
    // The seed's key is used before the first await inside, so a seed replaced meanwhile
    // (and zeroed) is never half used.
    const stored = await seed.transformer.toStorage(plaintext, authenticatedData);
    const data = encodeEncryptedObject({
      encryptedData: stored.data,
      keyId: seed.keyId,
      encryptedDekSource: seed.encryptedDekSource,
      annotations: seed.annotations,
      dekSourceType: DekSourceType.HkdfSha256XNonceAesGcmSeed,
    });
    return { data, writer: stored.writer };
  }

  async fromStorage(data: Uint8Array, authenticatedData: Uint8Array): Promise<Read> {
    const current = this.#state.forRead(this.#lastProblem);
    const object = decodeEncryptedObject(data);
    let transformer = await this.#sourceTransformer(object);
    // A seed evicted (and zeroed) while this read waited is decrypted again.
    if (transformer.disposed) transformer = await this.#sourceTransformer(object);
    const read = await transformer.fromStorage(object.encryptedData, authenticatedData);
    return {
      plaintext: read.plaintext,
      stale: this.#state.isStale(object, current),
      writer: { provider: this.#provider, keyId: object.keyId },
    };
  }

  currentWriter(): Writer {
    const seed = this.#state.forWrite(Date.now(), this.#lastProblem);
    return { provider: this.#provider, keyId: seed.keyId };
  }

  /** Number of distinct DEK sources whose decryption is cached. */
  get cachedSources(): number {
    return this.#sources.size;
  }

  /** Stops the timer, closes the connection and zeroes every seed held. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#plugin.close();
    this.#state.seed?.transformer.dispose();
    this.#sources.clear();
  }

  #schedule(): void {
    if (this.#closed) return;
    clearTimeout(this.#timer);
    const delay =
      this.#lastProblem === undefined ? this.#timing.healthyPollMs : this.#timing.unhealthyPollMs;
    this.#timer = setTimeout(() => void this.check(), delay);
    this.#timer.unref();
  }

  async #runCheck(): Promise<void> {
    // The expiry counts from before the network call, as kube-apiserver does.
    const startedAt = Date.now();
    try {
      const status = await this.#plugin.status();
      if (keyIdProblem(status.keyId) === undefined) this.#observeStatusKeyId?.(status.keyId);
      const problem = this.#state.statusProblem(status);
      if (problem !== undefined) throw refuse(this.#name, problem);
      if (this.#state.needsSeed(status.keyId, startedAt)) {
        const seed = await this.#newSeed(status.keyId);
        this.#state.install(seed, startedAt)?.transformer.dispose();
      }
      this.#lastProblem = undefined;
    } catch (error) {
      this.#lastProblem = errorMessage(error);
    }
  }

  async #newSeed(statusKeyId: string): Promise<WriteSeed> {
    const seed = randomFillSync(new Uint8Array(SEED_BYTES));
    try {
      const answer = await this.#plugin.encrypt(randomUUID(), seed);
      const problem = this.#state.encryptProblem(answer, statusKeyId);
      if (problem !== undefined) throw refuse(this.#name, problem);
      const writer = { provider: this.#provider, keyId: answer.keyId };
      // Our own writes are read back without asking the plugin; the cache holds a copy of
      // its own, so evicting it never zeroes the key writes use.
      this.#sources.set(
        dekSourceCacheKey({
          dekSourceType: DekSourceType.HkdfSha256XNonceAesGcmSeed,
          encryptedDekSource: answer.ciphertext,
          keyId: answer.keyId,
          annotations: answer.annotations,
        }),
        Promise.resolve(new ExtendedNonceGcmTransformer(seed, writer)),
      );
      return {
        keyId: answer.keyId,
        encryptedDekSource: answer.ciphertext,
        annotations: answer.annotations,
        transformer: new ExtendedNonceGcmTransformer(seed, writer),
      };
    } finally {
      seed.fill(0);
    }
  }

  #sourceTransformer(object: EncryptedObject): Promise<KeyedTransformer> {
    const key = dekSourceCacheKey(object);
    const cached = this.#sources.get(key);
    if (cached !== undefined) return cached;
    // Concurrent reads of one new seed share a single Decrypt call.
    const pending = this.#decryptSource(object);
    this.#sources.set(key, pending);
    pending.catch(() => {
      if (this.#sources.get(key) === pending) this.#sources.delete(key);
    });
    return pending;
  }

  async #decryptSource(object: EncryptedObject): Promise<KeyedTransformer> {
    const source = await this.#plugin.decrypt(randomUUID(), {
      ciphertext: object.encryptedDekSource,
      keyId: object.keyId,
      annotations: object.annotations,
    });
    const writer = { provider: this.#provider, keyId: object.keyId };
    try {
      if (object.dekSourceType === DekSourceType.HkdfSha256XNonceAesGcmSeed) {
        if (source.length < SEED_BYTES)
          throw refuse(
            this.#name,
            `Decrypt returned a ${source.length}-byte seed, expected ${SEED_BYTES}`,
          );
        return new ExtendedNonceGcmTransformer(source, writer);
      }
      if (![16, 24, 32].includes(source.length))
        throw refuse(this.#name, `Decrypt returned a ${source.length}-byte AES key`);
      return new AesGcmTransformer(source, writer);
    } finally {
      source.fill(0);
    }
  }
}
