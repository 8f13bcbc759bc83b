import { createCipheriv, createDecipheriv, randomBytes, randomUUID } from "node:crypto";
import { clientError } from "./errors.js";

/** Key states the emulator models (a subset of KMS KeyState). */
export type KeyState = "Enabled" | "Disabled" | "PendingDeletion";

/** One symmetric KMS key: 32 random bytes that never leave the emulator. */
export interface EmulatedKey {
  readonly keyId: string;
  readonly arn: string;
  readonly description: string;
  readonly creationDate: Date;
  state: KeyState;
  deletionDate?: Date;
  readonly material: Buffer;
}

/** The parts of a ciphertext blob, before the key is used. */
export interface ParsedBlob {
  keyId: string;
  header: Buffer;
  nonce: Buffer;
  tag: Buffer;
  ciphertext: Buffer;
}

/** Encryption context: string to string, bound to the ciphertext as AES-GCM AAD. */
export type EncryptionContext = Record<string, string>;

const BLOB_VERSION = 0x01;
const NONCE_LENGTH = 12;
const TAG_LENGTH = 16;
const AAD_LABEL = Buffer.from("aws-kms-emulator/v1\u0000", "utf8");
const MAX_KEYS = 1000;
const KEY_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const ALIAS_NAME = /^alias\/[a-zA-Z0-9/_-]{1,250}$/;

/**
 * Keys and aliases of one emulated account and region, with the ciphertext format:
 * `0x01 || len(keyId) || keyId || nonce(12) || tag(16) || AES-256-GCM ciphertext`. The key id
 * travels in the blob (so Decrypt needs no KeyId, like the real service) and is covered, with
 * the canonical encryption context, by the GCM tag.
 */
export class KeyStore {
  readonly region: string;
  readonly accountId: string;
  readonly #keys = new Map<string, EmulatedKey>();
  readonly #aliases = new Map<string, string>();
  readonly #deleted = new Set<string>();

  constructor(region: string, accountId: string) {
    this.region = region;
    this.accountId = accountId;
  }

  /** Creates an enabled symmetric key. */
  createKey(description = ""): EmulatedKey {
    if (this.#keys.size >= MAX_KEYS)
      throw new RangeError(`the emulator holds at most ${MAX_KEYS} keys`);
    const keyId = randomUUID();
    const key: EmulatedKey = {
      keyId,
      arn: `arn:aws:kms:${this.region}:${this.accountId}:key/${keyId}`,
      description,
      creationDate: new Date(),
      state: "Enabled",
      material: randomBytes(32),
    };
    this.#keys.set(keyId, key);
    return key;
  }

  /** Points `alias/<name>` at a key (creating or retargeting the alias); returns its ARN. */
  createAlias(aliasName: string, keyRef: string): string {
    if (!ALIAS_NAME.test(aliasName) || aliasName.startsWith("alias/aws/")) {
      throw new RangeError(`invalid alias name ${JSON.stringify(aliasName)}: use alias/<name>`);
    }
    this.#aliases.set(aliasName, this.resolve(keyRef).keyId);
    return this.aliasArn(aliasName);
  }

  /** ARN of an alias name in this account and region. */
  aliasArn(aliasName: string): string {
    return `arn:aws:kms:${this.region}:${this.accountId}:${aliasName}`;
  }

  /** Removes a key for good (what happens when the deletion waiting period ends). */
  deleteKey(keyRef: string): void {
    const key = this.resolve(keyRef);
    key.material.fill(0);
    this.#keys.delete(key.keyId);
    this.#deleted.add(key.keyId);
    for (const [alias, target] of this.#aliases)
      if (target === key.keyId) this.#aliases.delete(alias);
  }

  /** Finds a key by key id, key ARN, alias name or alias ARN; NotFoundException otherwise. */
  resolve(keyRef: string): EmulatedKey {
    const arnPrefix = `arn:aws:kms:${this.region}:${this.accountId}:`;
    let reference = keyRef;
    if (keyRef.startsWith("arn:")) {
      if (!keyRef.startsWith(arnPrefix))
        throw clientError("NotFoundException", `Invalid arn ${keyRef}`);
      reference = keyRef.slice(arnPrefix.length);
      if (reference.startsWith("key/")) reference = reference.slice("key/".length);
      else if (!reference.startsWith("alias/"))
        throw clientError("NotFoundException", `Invalid arn ${keyRef}`);
    }
    if (reference.startsWith("alias/")) {
      const target = this.#aliases.get(reference);
      const key = target === undefined ? undefined : this.#keys.get(target);
      if (key === undefined)
        throw clientError("NotFoundException", `Alias ${this.aliasArn(reference)} is not found.`);
      return key;
    }
    if (!KEY_ID.test(reference))
      throw clientError("NotFoundException", `Invalid keyId '${keyRef}'`);
    const key = this.#keys.get(reference);
    if (key === undefined) {
      throw clientError("NotFoundException", `Key '${arnPrefix}key/${reference}' does not exist`);
    }
    return key;
  }

  /** The key a blob names, or undefined when it never existed or was deleted. */
  keyById(keyId: string): EmulatedKey | undefined {
    return this.#keys.get(keyId);
  }

  /** Whether a key id belonged to a key that has since been deleted. */
  wasDeleted(keyId: string): boolean {
    return this.#deleted.has(keyId);
  }

  /** Encrypts under a key, binding the encryption context. */
  seal(key: EmulatedKey, plaintext: Uint8Array, context: EncryptionContext): Buffer {
    const id = Buffer.from(key.keyId, "ascii");
    const header = Buffer.concat([Buffer.from([BLOB_VERSION, id.length]), id]);
    const nonce = randomBytes(NONCE_LENGTH);
    const cipher = createCipheriv("aes-256-gcm", key.material, nonce);
    cipher.setAAD(additionalData(header, context));
    const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    return Buffer.concat([header, nonce, cipher.getAuthTag(), ciphertext]);
  }

  /** Decrypts a parsed blob; any mismatch is InvalidCiphertextException (no detail). */
  open(key: EmulatedKey, blob: ParsedBlob, context: EncryptionContext): Buffer {
    try {
      const decipher = createDecipheriv("aes-256-gcm", key.material, blob.nonce);
      decipher.setAAD(additionalData(blob.header, context));
      decipher.setAuthTag(blob.tag);
      return Buffer.concat([decipher.update(blob.ciphertext), decipher.final()]);
    } catch {
      throw clientError("InvalidCiphertextException");
    }
  }
}

/** Splits a blob into its parts; malformed input is InvalidCiphertextException. */
export function parseBlob(blob: Uint8Array): ParsedBlob {
  const bytes = Buffer.from(blob.buffer, blob.byteOffset, blob.byteLength);
  const idLength = bytes[1] ?? 0;
  const headerLength = 2 + idLength;
  if (
    bytes[0] !== BLOB_VERSION ||
    idLength === 0 ||
    bytes.length < headerLength + NONCE_LENGTH + TAG_LENGTH
  ) {
    throw clientError("InvalidCiphertextException");
  }
  const nonceEnd = headerLength + NONCE_LENGTH;
  return {
    keyId: bytes.subarray(2, headerLength).toString("latin1"),
    header: bytes.subarray(0, headerLength),
    nonce: bytes.subarray(headerLength, nonceEnd),
    tag: bytes.subarray(nonceEnd, nonceEnd + TAG_LENGTH),
    ciphertext: bytes.subarray(nonceEnd + TAG_LENGTH),
  };
}

// Canonical context: entries sorted by key, each as u32be length || UTF-8, so equal maps in
// any order authenticate and no two different maps share an encoding.
function additionalData(header: Buffer, context: EncryptionContext): Buffer {
  const parts: Buffer[] = [AAD_LABEL, header];
  for (const name of Object.keys(context).sort()) {
    for (const text of [name, context[name] ?? ""]) {
      const bytes = Buffer.from(text, "utf8");
      const length = Buffer.alloc(4);
      length.writeUInt32BE(bytes.length);
      parts.push(length, bytes);
    }
  }
  return Buffer.concat(parts);
}
