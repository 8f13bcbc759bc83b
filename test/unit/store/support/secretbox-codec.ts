/**
 * A small but genuine FieldCodec for testing the store's own logic without a daemon: listed
 * top-level fields are sealed with libsodium secretbox under a per-field key derived from a
 * versioned master key (HMAC-SHA256 over resource, path and record id, so a value moved to
 * another place fails to open). Key versions can be rotated and retired, like the real ones.
 * Stored text: `tsb:<key id>:<base64(nonce ‖ box)>`.
 */
import { createHmac, randomBytes } from "node:crypto";
import {
  loadSecretbox,
  SECRETBOX_NONCE_BYTES,
  secretboxOpen,
  secretboxSeal,
} from "../../../../src/crypto/secretbox.js";
import {
  DecryptionFailedError,
  KmsEnvelopeError,
  MalformedCiphertextError,
  UnknownKeyIdError,
} from "../../../../src/errors.js";
import type {
  FieldCodec,
  FieldRecord,
  FieldStamp,
  JsonObject,
  JsonValue,
  OpenedRecord,
  SealedRecord,
} from "../../../../src/fields/field-codec.js";

const PROVIDER = "test-secretbox";

export class SecretboxCodec implements FieldCodec {
  readonly #fields: ReadonlyMap<string, readonly string[]>;
  readonly #keys = new Map<string, Buffer>();
  #primary = "";
  /** Seal and open calls made, for tests that count work. */
  calls = { seal: 0, open: 0 };

  /** `fields`: resource → encrypted top-level field names. */
  constructor(fields: Record<string, readonly string[]>) {
    this.#fields = new Map(Object.entries(fields));
    this.rotate();
  }

  static async create(fields: Record<string, readonly string[]>): Promise<SecretboxCodec> {
    await loadSecretbox();
    return new SecretboxCodec(fields);
  }

  /** The primary key id. */
  get primaryKeyId(): string {
    return this.#primary;
  }

  /** Makes a new primary key version; older ones still open. Returns its id. */
  rotate(): string {
    const id = `k${this.#keys.size + 1}-${randomBytes(4).toString("hex")}`;
    this.#keys.set(id, randomBytes(32));
    this.#primary = id;
    return id;
  }

  /** Stops opening values under a non-primary key version. */
  retire(keyId: string): void {
    if (keyId === this.#primary) throw new Error("cannot retire the primary key");
    this.#keys.delete(keyId);
  }

  encryptedPaths(resource: string): readonly string[] {
    return this.#fields.get(resource) ?? [];
  }

  /** The test codec computes no lookup tokens, so no field has a lookup. */
  lookupPaths(): readonly string[] {
    return [];
  }

  /** Like the field layer: a resource given no fields (even []) is known, any other is refused. */
  checkResource(resource: string): void {
    if (!this.#fields.has(resource))
      throw new KmsEnvelopeError("UNMAPPED_RESOURCE", `test codec: no entry for ${resource}`);
  }

  async currentWriter(): Promise<Pick<FieldStamp, "provider" | "keyId">> {
    return { provider: PROVIDER, keyId: this.#primary };
  }

  async seal(resource: string, records: readonly FieldRecord[]): Promise<SealedRecord[]> {
    this.checkResource(resource);
    this.calls.seal++;
    return records.map((record) => {
      const document: JsonObject = { ...record.document };
      const stamps: FieldStamp[] = [];
      for (const path of this.encryptedPaths(resource)) {
        const value = document[path];
        if (value === undefined || value === null) continue;
        const nonce = randomBytes(SECRETBOX_NONCE_BYTES);
        const key = this.#fieldKey(this.#primary, resource, path, record.id);
        const box = secretboxSeal(Buffer.from(JSON.stringify(value)), nonce, key);
        document[path] = `tsb:${this.#primary}:${Buffer.concat([nonce, box]).toString("base64")}`;
        stamps.push({ path, route: "engine", provider: PROVIDER, keyId: this.#primary });
      }
      return { id: record.id, document, stamps };
    });
  }

  async open(resource: string, records: readonly FieldRecord[]): Promise<OpenedRecord[]> {
    this.checkResource(resource);
    this.calls.open++;
    return records.map((record) => {
      const document: JsonObject = { ...record.document };
      const stamps: FieldStamp[] = [];
      for (const path of this.encryptedPaths(resource)) {
        const stored = document[path];
        if (stored === undefined || stored === null) continue;
        const match = typeof stored === "string" ? /^tsb:([^:]+):(.+)$/.exec(stored) : null;
        if (match === null) throw new MalformedCiphertextError(`${resource} ${record.id} ${path}`);
        const keyId = match[1] as string;
        if (!this.#keys.has(keyId)) throw new UnknownKeyIdError(keyId);
        const bytes = Buffer.from(match[2] as string, "base64");
        const plaintext = secretboxOpen(
          bytes.subarray(SECRETBOX_NONCE_BYTES),
          bytes.subarray(0, SECRETBOX_NONCE_BYTES),
          this.#fieldKey(keyId, resource, path, record.id),
        );
        if (plaintext === undefined) throw new DecryptionFailedError();
        document[path] = JSON.parse(Buffer.from(plaintext).toString("utf8")) as JsonValue;
        stamps.push({ path, route: "engine", provider: PROVIDER, keyId });
      }
      const stale = stamps.some((stamp) => stamp.keyId !== this.#primary);
      return { id: record.id, document, stale, stamps };
    });
  }

  /** Declares no lookups: the store's searches are tested through the daemon. */
  async tokensFor(resource: string, path: string): Promise<string[]> {
    this.checkResource(resource);
    throw new KmsEnvelopeError("INVALID_REQUEST", `test codec: ${resource} ${path} has no lookup`);
  }

  async close(): Promise<void> {}

  #fieldKey(keyId: string, resource: string, path: string, id: string): Buffer {
    const master = this.#keys.get(keyId) as Buffer;
    return createHmac("sha256", master).update(`${resource}\u0000${path}\u0000${id}`).digest();
  }
}
