import { createHash, randomFillSync, randomUUID } from "node:crypto";
import { LRUCache } from "lru-cache";
import { errorMessage, KmsEnvelopeError } from "../../errors.js";
import { AesGcmTransformer } from "../transformers/aes-gcm.js";
import { ExtendedNonceGcmTransformer, SEED_BYTES } from "../transformers/aes-gcm-extended-nonce.js";
import type { Read, Stored, Transformer, Writer } from "../transformers/transformer.js";
import { dekSourceCacheKey } from "./dek-source-cache-key.js";
import {
  DekSourceType,
  decodeEncryptedObject,
  type EncryptedObject,
  encodeEncryptedObject,
} from "./encrypted-object.js";
import { annotationsProblem, encryptedDekSourceProblem, keyIdProblem } from "./kms-v2-rules.js";
import { type CallObserver, KmsV2Plugin } from "./plugin-client.js";

/** kube-apiserver's timing toward a KMS v2 plugin (KMS-CONTRACT.md §2.2); tests shorten it. */
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

const ACCEPTED_VERSIONS = new Set(["v2", "v2beta1"]);

export interface KmsV2EnvelopeOptions {
  readonly name: string;
  readonly socketPath: string;
  readonly timeoutMs: number;
  readonly timing?: KmsV2Timing;
  /** Distinct stored DEK sources whose decryption is kept (default 1000). */
  readonly cacheSize?: number;
  /** Told about every plugin call (method, gRPC code, seconds). */
  readonly observe?: CallObserver;
}

interface WriteState {
  readonly keyId: string;
  readonly encryptedDekSource: Uint8Array;
  readonly annotations: ReadonlyMap<string, Uint8Array>;
  readonly transformer: ExtendedNonceGcmTransformer;
  expiresAt: number;
}

/** Key ids are public but can be long; errors name them by hash as kube-apiserver logs do. */
function keyIdHash(keyId: string): string {
  return `sha256:${createHash("sha256").update(keyId).digest("hex")}`;
}

function refuse(name: string, problem: string): KmsEnvelopeError {
  return new KmsEnvelopeError(
    "KMS_PLUGIN_FAILED",
    `kms v2 provider ${JSON.stringify(name)}: ${problem}`,
  );
}

/**
 * The `kms` apiVersion v2 provider as kube-apiserver runs it: one Status check at start and
 * then on a timer; a new 32-byte seed encrypted by the plugin (one Encrypt call) at start and
 * whenever Status reports a new key id; every write derives a one-use key from that seed.
 * Reads decrypt each distinct stored seed once (one Decrypt call) and keep it in a bounded
 * cache. Writes coast on the last seed for `writeTtlMs` after the last healthy check, then
 * fail until the plugin is healthy again; reads never expire.
 */
export class KmsV2Envelope implements Transformer {
  readonly #name: string;
  readonly #provider: string;
  readonly #plugin: KmsV2Plugin;
  readonly #timing: KmsV2Timing;
  readonly #sources: LRUCache<string, Promise<Transformer>>;
  #state: WriteState | undefined;
  #version: string | undefined;
  #lastProblem: string | undefined = "no Status check has completed yet";
  #check: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  private constructor(options: KmsV2EnvelopeOptions) {
    this.#name = options.name;
    this.#provider = `kms:v2:${options.name}`;
    this.#plugin = new KmsV2Plugin(options);
    this.#timing = options.timing ?? KUBE_APISERVER_TIMING;
    this.#sources = new LRUCache({ max: options.cacheSize ?? 1000 });
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
    const state = this.#writeState();
    const stored = await state.transformer.toStorage(plaintext, authenticatedData);
    const data = encodeEncryptedObject({
      encryptedData: stored.data,
      keyId: state.keyId,
      encryptedDekSource: state.encryptedDekSource,
      annotations: state.annotations,
      dekSourceType: DekSourceType.HkdfSha256XNonceAesGcmSeed,
    });
    return { data, writer: stored.writer };
  }

  async fromStorage(data: Uint8Array, authenticatedData: Uint8Array): Promise<Read> {
    // As in kube-apiserver, reads also need one healthy check since start: until then the
    // provider has no state at all.
    const state = this.#state;
    if (state === undefined) throw this.#noState();
    const object = decodeEncryptedObject(data);
    const transformer = await this.#sourceTransformer(object);
    const read = await transformer.fromStorage(object.encryptedData, authenticatedData);
    return {
      plaintext: read.plaintext,
      stale:
        object.keyId !== state.keyId ||
        object.dekSourceType !== DekSourceType.HkdfSha256XNonceAesGcmSeed,
      writer: { provider: this.#provider, keyId: object.keyId },
    };
  }

  currentWriter(): Writer {
    return { provider: this.#provider, keyId: this.#writeState().keyId };
  }

  /** Number of distinct DEK sources whose decryption is cached. */
  get cachedSources(): number {
    return this.#sources.size;
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#plugin.close();
  }

  #writeState(): WriteState {
    const state = this.#state;
    if (state === undefined) throw this.#noState();
    if (Date.now() > state.expiresAt)
      throw refuse(
        this.#name,
        `the DEK seed for key id ${keyIdHash(state.keyId)} expired at ${new Date(state.expiresAt).toISOString()} because the plugin has not passed a Status check since (${this.#lastProblem ?? "unknown"}); writes resume at the next healthy check`,
      );
    return state;
  }

  #noState(): KmsEnvelopeError {
    return refuse(
      this.#name,
      `the plugin has not passed a Status check since start (${this.#lastProblem ?? "unknown"}); start the plugin or fix the endpoint`,
    );
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
      const problem = this.#statusProblem(status);
      if (problem !== undefined) throw refuse(this.#name, problem);
      const state = this.#state;
      if (state !== undefined && state.keyId === status.keyId) {
        state.expiresAt = startedAt + this.#timing.writeTtlMs;
      } else {
        this.#state = await this.#newSeed(status.keyId, startedAt);
      }
      this.#lastProblem = undefined;
    } catch (error) {
      this.#lastProblem = errorMessage(error);
    }
  }

  #statusProblem(status: { version: string; healthz: string; keyId: string }): string | undefined {
    if (status.healthz !== "ok")
      return `got unexpected healthz status: ${JSON.stringify(status.healthz.slice(0, 200))}`;
    if (!ACCEPTED_VERSIONS.has(status.version))
      return `expected KMSv2 API version v2, got ${JSON.stringify(status.version.slice(0, 40))}`;
    if (this.#version !== undefined && this.#version !== status.version)
      return `KMSv2 API version should not change, was ${this.#version}, now ${status.version}`;
    this.#version = status.version;
    const keyProblem = keyIdProblem(status.keyId);
    return keyProblem === undefined ? undefined : `Status: ${keyProblem}`;
  }

  async #newSeed(statusKeyId: string, startedAt: number): Promise<WriteState> {
    const seed = randomFillSync(new Uint8Array(SEED_BYTES));
    try {
      const answer = await this.#plugin.encrypt(randomUUID(), seed);
      const problem =
        encryptedDekSourceProblem(answer.ciphertext) ??
        keyIdProblem(answer.keyId) ??
        annotationsProblem(answer.annotations) ??
        (answer.keyId === statusKeyId
          ? undefined
          : `Encrypt returned key id ${keyIdHash(answer.keyId)} but Status reported ${keyIdHash(statusKeyId)}`);
      if (problem !== undefined) throw refuse(this.#name, `Encrypt: ${problem}`);
      const transformer = new ExtendedNonceGcmTransformer(seed, {
        provider: this.#provider,
        keyId: answer.keyId,
      });
      // Our own writes are read back without asking the plugin.
      this.#sources.set(
        dekSourceCacheKey({
          dekSourceType: DekSourceType.HkdfSha256XNonceAesGcmSeed,
          encryptedDekSource: answer.ciphertext,
          keyId: answer.keyId,
          annotations: answer.annotations,
        }),
        Promise.resolve(transformer),
      );
      return {
        keyId: answer.keyId,
        encryptedDekSource: answer.ciphertext,
        annotations: answer.annotations,
        transformer,
        expiresAt: startedAt + this.#timing.writeTtlMs,
      };
    } finally {
      seed.fill(0);
    }
  }

  #sourceTransformer(object: EncryptedObject): Promise<Transformer> {
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

  async #decryptSource(object: EncryptedObject): Promise<Transformer> {
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
