import { randomFillSync } from "node:crypto";
import { LRUCache } from "lru-cache";
import { KmsEnvelopeError, MalformedCiphertextError } from "../../errors.js";
import type { CallObserver } from "../../wire/unary-connection.js";
import { cbcOpen } from "../transformers/aes-cbc.js";
import { gcmOpen, gcmSeal } from "../transformers/aes-gcm.js";
import type { Read, Stored, Transformer, Writer } from "../transformers/transformer.js";
import { KmsV1Plugin } from "./plugin-client.js";

const DEK_BYTES = 32;
const MAX_ENCRYPTED_DEK_BYTES = 0xffff;

interface KmsV1EnvelopeOptions {
  readonly name: string;
  readonly socketPath: string;
  readonly timeoutMs: number;
  /** Decrypted DEKs kept (Kubernetes' cachesize: default 1000, negative disables). */
  readonly cacheSize: number | undefined;
  /** Told about every plugin call (method, gRPC code, seconds). */
  readonly observe?: CallObserver;
}

/**
 * The deprecated `kms` apiVersion v1 provider: a new AES-256 DEK per write, encrypted by the
 * plugin (one Encrypt call per write, the reason v2 exists), stored as
 * uint16-BE len(encrypted DEK) ‖ encrypted DEK ‖ AES-GCM(nonce ‖ ciphertext ‖ tag). Reads fall
 * back to AES-CBC for data written before Kubernetes 1.25 and report it stale.
 */
export class KmsV1Envelope implements Transformer {
  readonly #plugin: KmsV1Plugin;
  readonly #writer: Writer;
  readonly #name: string;
  readonly #deks: LRUCache<string, Uint8Array> | undefined;
  #versionChecked: Promise<void> | undefined;

  constructor(options: KmsV1EnvelopeOptions) {
    this.#plugin = new KmsV1Plugin(options);
    this.#name = options.name;
    this.#writer = { provider: `kms:v1:${options.name}`, keyId: "" };
    const size = options.cacheSize ?? 1000;
    this.#deks =
      size < 0 ? undefined : new LRUCache({ max: size, dispose: (dek: Uint8Array) => dek.fill(0) });
  }

  async toStorage(plaintext: Uint8Array, authenticatedData: Uint8Array): Promise<Stored> {
    await this.#checkVersion();
    const dek = randomFillSync(new Uint8Array(DEK_BYTES));
    try {
      const encryptedDek = await this.#plugin.encrypt(dek);
      if (encryptedDek.length === 0 || encryptedDek.length > MAX_ENCRYPTED_DEK_BYTES)
        throw new KmsEnvelopeError(
          "KMS_PLUGIN_FAILED",
          `kms v1 provider ${JSON.stringify(this.#name)}: Encrypt returned ${encryptedDek.length} bytes, expected 1 to ${MAX_ENCRYPTED_DEK_BYTES}`,
        );
      const header = Buffer.alloc(2);
      header.writeUInt16BE(encryptedDek.length);
      const data = Buffer.concat([
        header,
        encryptedDek,
        gcmSeal(dek, plaintext, authenticatedData),
      ]);
      this.#deks?.set(Buffer.from(encryptedDek).toString("base64"), Uint8Array.from(dek));
      return { data, writer: this.#writer };
    } finally {
      dek.fill(0);
    }
  }

  async fromStorage(data: Uint8Array, authenticatedData: Uint8Array): Promise<Read> {
    if (data.length < 2) throw new MalformedCiphertextError("the kms v1 value has no DEK length");
    const dekLength = (data[0] as number) * 256 + (data[1] as number);
    if (dekLength === 0 || data.length < 2 + dekLength)
      throw new MalformedCiphertextError("the kms v1 value is shorter than its encrypted DEK");
    const encryptedDek = data.subarray(2, 2 + dekLength);
    const payload = data.subarray(2 + dekLength);
    const dek = await this.#dek(encryptedDek);
    try {
      return {
        plaintext: gcmOpen(dek, payload, authenticatedData),
        stale: false,
        writer: this.#writer,
      };
    } catch (gcmError) {
      try {
        return { plaintext: cbcOpen(dek, payload), stale: true, writer: this.#writer };
      } catch {
        throw gcmError;
      }
    }
  }

  currentWriter(): Writer {
    return this.#writer;
  }

  /** Number of decrypted DEKs cached. */
  get cachedSources(): number {
    return this.#deks?.size ?? 0;
  }

  close(): void {
    this.#plugin.close();
    this.#deks?.clear();
  }

  async #dek(encryptedDek: Uint8Array): Promise<Uint8Array> {
    const key = Buffer.from(encryptedDek).toString("base64");
    const cached = this.#deks?.get(key);
    if (cached !== undefined) return cached;
    await this.#checkVersion();
    const dek = await this.#plugin.decrypt(encryptedDek);
    if (![16, 24, 32].includes(dek.length))
      throw new KmsEnvelopeError(
        "KMS_PLUGIN_FAILED",
        `kms v1 provider ${JSON.stringify(this.#name)}: Decrypt returned a ${dek.length}-byte key`,
      );
    this.#deks?.set(key, dek);
    return dek;
  }

  /** kube-apiserver refuses a v1 plugin that does not answer Version with "v1beta1". */
  #checkVersion(): Promise<void> {
    if (this.#versionChecked === undefined) {
      this.#versionChecked = this.#plugin.version().then((version) => {
        if (version !== KmsV1Plugin.API_VERSION)
          throw new KmsEnvelopeError(
            "KMS_PLUGIN_FAILED",
            `kms v1 provider ${JSON.stringify(this.#name)}: the plugin speaks ${JSON.stringify(version.slice(0, 40))}, expected v1beta1`,
          );
      });
      this.#versionChecked.catch(() => {
        this.#versionChecked = undefined;
      });
    }
    return this.#versionChecked;
  }
}
