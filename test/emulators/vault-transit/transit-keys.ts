import {
  type CipherGCMTypes,
  constants,
  createCipheriv,
  createDecipheriv,
  generateKeyPairSync,
  hkdfSync,
  type KeyObject,
  privateDecrypt,
  publicEncrypt,
  randomBytes,
} from "node:crypto";
import { badRequest, decodeBase64, VaultError } from "./errors.js";

/** The Transit key types the emulator implements (Vault's AEAD types and one RSA type). */
export type TransitKeyType = "aes256-gcm96" | "aes128-gcm96" | "chacha20-poly1305" | "rsa-2048";

const KEY_TYPES: readonly TransitKeyType[] = [
  "aes256-gcm96",
  "aes128-gcm96",
  "chacha20-poly1305",
  "rsa-2048",
];

interface KeyVersion {
  readonly secret: Buffer | undefined;
  readonly rsa: { publicKey: KeyObject; privateKey: KeyObject } | undefined;
  readonly created: number;
}

/** Parameters of an encrypt request, as Vault's transit/encrypt/:name reads them. */
export interface EncryptInput {
  plaintext?: unknown;
  context?: unknown;
  associated_data?: unknown;
  key_version?: unknown;
}

/** Parameters of a decrypt request. */
export interface DecryptInput {
  ciphertext?: unknown;
  context?: unknown;
  associated_data?: unknown;
}

const TOO_OLD = "ciphertext or signature version is disallowed by policy (too old)";
const SOFT_DELETED = "refusing to use soft-deleted key";

/**
 * One named Transit key with its versions (Vault's keysutil.Policy, reduced): encrypt under the
 * latest version (or key_version), decrypt any version from min_decryption_version on, rotate,
 * derived keys (HKDF-SHA256 of the version key with the context as info), associated data for
 * the AEAD types, and Vault's error strings for every refusal.
 */
export class TransitKey {
  readonly name: string;
  readonly type: TransitKeyType;
  readonly derived: boolean;
  readonly #versions = new Map<number, KeyVersion>();
  latestVersion = 0;
  minDecryptionVersion = 1;
  minEncryptionVersion = 0;
  softDeleted = false;

  constructor(name: string, type: TransitKeyType = "aes256-gcm96", derived = false) {
    if (!KEY_TYPES.includes(type)) throw badRequest(`unknown key type ${type}`);
    this.name = name;
    this.type = type;
    this.derived = derived && type !== "rsa-2048";
    this.rotate();
  }

  /** Adds a version, now the latest (transit/keys/:name/rotate). */
  rotate(): number {
    if (this.softDeleted) throw badRequest(SOFT_DELETED);
    this.latestVersion += 1;
    const created = Math.floor(Date.now() / 1000);
    if (this.type === "rsa-2048") {
      const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
      this.#versions.set(this.latestVersion, { secret: undefined, rsa, created });
    } else {
      const bytes = this.type === "aes128-gcm96" ? 16 : 32;
      this.#versions.set(this.latestVersion, {
        secret: randomBytes(bytes),
        rsa: undefined,
        created,
      });
    }
    return this.latestVersion;
  }

  /** Sets min_decryption_version / min_encryption_version (transit/keys/:name/config). */
  configure(settings: { minDecryptionVersion?: number; minEncryptionVersion?: number }): void {
    const minDecryption = settings.minDecryptionVersion ?? this.minDecryptionVersion;
    const minEncryption = settings.minEncryptionVersion ?? this.minEncryptionVersion;
    if (minDecryption < 1 || minDecryption > this.latestVersion)
      throw badRequest("cannot set min decryption version to a version that does not exist");
    if (minEncryption > 0 && minEncryption < minDecryption)
      throw badRequest(
        "min decryption version should not be less then min available version or min encryption version",
      );
    this.minDecryptionVersion = minDecryption;
    this.minEncryptionVersion = minEncryption;
  }

  /** The `data` of GET transit/keys/:name. */
  read(): Record<string, unknown> {
    const keys: Record<string, number> = {};
    for (const [version, entry] of this.#versions) {
      if (version >= this.minDecryptionVersion) keys[String(version)] = entry.created;
    }
    const aead = this.type !== "rsa-2048";
    return {
      name: this.name,
      type: this.type,
      derived: this.derived,
      ...(this.derived && { kdf: "hkdf_sha256" }),
      keys,
      latest_version: this.latestVersion,
      min_available_version: 0,
      min_decryption_version: this.minDecryptionVersion,
      min_encryption_version: this.minEncryptionVersion,
      deletion_allowed: false,
      exportable: false,
      allow_plaintext_backup: false,
      supports_encryption: true,
      supports_decryption: true,
      supports_derivation: aead,
      supports_signing: !aead,
      imported: false,
      soft_deleted: this.softDeleted,
    };
  }

  /** transit/encrypt/:name, single item: `{ciphertext, key_version}`. */
  encrypt(input: EncryptInput): { ciphertext: string; key_version: number } {
    if (typeof input.plaintext !== "string") throw badRequest("missing plaintext to encrypt");
    const plaintext = decodeBase64(input.plaintext);
    const context = optionalBase64(input.context);
    const associated = this.#associatedData(input.associated_data);
    if (this.softDeleted) throw badRequest(SOFT_DELETED);
    let version = Number(input.key_version ?? 0);
    if (!Number.isInteger(version)) throw badRequest("key_version must be an integer");
    if (version === 0) version = this.latestVersion;
    else if (version < 0) throw badRequest("requested version for encryption is negative");
    else if (version > this.latestVersion)
      throw badRequest("requested version for encryption is higher than the latest key version");
    if (version < this.minEncryptionVersion)
      throw badRequest(
        "requested version for encryption is less than the minimum encryption key version",
      );
    const entry = this.#versions.get(version) as KeyVersion;
    let sealed: Buffer;
    if (entry.rsa !== undefined) {
      sealed = publicEncrypt(
        { key: entry.rsa.publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha256" },
        plaintext,
      );
    } else {
      const key = this.#encryptionKey(entry, context);
      const nonce = randomBytes(12);
      const cipher = this.#cipher(key, nonce);
      if (associated !== undefined)
        cipher.setAAD(associated, { plaintextLength: plaintext.length });
      sealed = Buffer.concat([
        nonce,
        cipher.update(plaintext),
        cipher.final(),
        cipher.getAuthTag(),
      ]);
    }
    return { ciphertext: `vault:v${version}:${sealed.toString("base64")}`, key_version: version };
  }

  /** transit/decrypt/:name, single item: `{plaintext}`, with keysutil's checks in its order. */
  decrypt(input: DecryptInput): { plaintext: string } {
    if (typeof input.ciphertext !== "string" || input.ciphertext === "")
      throw badRequest("missing ciphertext to decrypt");
    const context = optionalBase64(input.context);
    const associated = this.#associatedData(input.associated_data);
    if (this.softDeleted) throw badRequest(SOFT_DELETED);
    const value = input.ciphertext;
    if (!value.startsWith("vault:v")) throw badRequest("invalid ciphertext: no prefix");
    const rest = value.slice("vault:v".length);
    const separator = rest.indexOf(":");
    if (separator < 0) throw badRequest("invalid ciphertext: wrong number of fields");
    const versionText = rest.slice(0, separator);
    if (!/^[+-]?\d+$/.test(versionText))
      throw badRequest("invalid ciphertext: version number could not be decoded");
    let version = Number(versionText);
    if (version === 0) version = 1;
    if (version > this.latestVersion) throw badRequest("invalid ciphertext: version is too new");
    if (version < this.minDecryptionVersion) throw badRequest(TOO_OLD);
    let decoded: Buffer;
    try {
      decoded = decodeBase64(rest.slice(separator + 1));
    } catch {
      throw badRequest("invalid ciphertext: could not decode base64");
    }
    const entry = this.#versions.get(version);
    if (entry === undefined) throw badRequest("no such key version");
    if (entry.rsa !== undefined) {
      try {
        const plaintext = privateDecrypt(
          {
            key: entry.rsa.privateKey,
            padding: constants.RSA_PKCS1_OAEP_PADDING,
            oaepHash: "sha256",
          },
          decoded,
        );
        return { plaintext: plaintext.toString("base64") };
      } catch {
        throw new VaultError(500, [
          "1 error occurred:\n\t* failed to RSA decrypt the ciphertext: crypto/rsa: decryption error\n\n",
        ]);
      }
    }
    const key = this.#encryptionKey(entry, context);
    if (decoded.length < 12) throw badRequest("invalid ciphertext length");
    if (decoded.length < 12 + 16) throw badRequest("cipher: message authentication failed");
    const decipher = this.#decipher(key, decoded.subarray(0, 12));
    decipher.setAuthTag(decoded.subarray(decoded.length - 16));
    const body = decoded.subarray(12, decoded.length - 16);
    if (associated !== undefined) decipher.setAAD(associated, { plaintextLength: body.length });
    try {
      const plaintext = Buffer.concat([decipher.update(body), decipher.final()]);
      return { plaintext: plaintext.toString("base64") };
    } catch {
      throw badRequest("cipher: message authentication failed");
    }
  }

  #cipher(key: Buffer, nonce: Buffer) {
    const options = { authTagLength: 16 };
    if (this.type === "chacha20-poly1305")
      return createCipheriv("chacha20-poly1305", key, nonce, options);
    return createCipheriv(this.#gcm(), key, nonce, options);
  }

  #decipher(key: Buffer, nonce: Buffer) {
    const options = { authTagLength: 16 };
    if (this.type === "chacha20-poly1305")
      return createDecipheriv("chacha20-poly1305", key, nonce, options);
    return createDecipheriv(this.#gcm(), key, nonce, options);
  }

  #gcm(): CipherGCMTypes {
    return this.type === "aes128-gcm96" ? "aes-128-gcm" : "aes-256-gcm";
  }

  // A derived key's version key is never used as is: HKDF-SHA256 with the context as info.
  #encryptionKey(entry: KeyVersion, context: Buffer | undefined): Buffer {
    const secret = entry.secret as Buffer;
    if (!this.derived) return secret;
    if (context === undefined || context.length === 0)
      throw badRequest(
        "missing 'context' for key derivation; the key was created using a derived key, which means additional, per-request information must be included in order to perform operations with the key",
      );
    return Buffer.from(hkdfSync("sha256", secret, Buffer.alloc(0), context, secret.length));
  }

  #associatedData(value: unknown): Buffer | undefined {
    if (value === undefined || value === "") return undefined;
    if (this.type === "rsa-2048")
      throw badRequest(`'[0].associated_data' provided for non-AEAD cipher suite ${this.type}`);
    try {
      return decodeBase64(String(value));
    } catch (error) {
      throw new VaultError(500, [
        `1 error occurred:\n\t* unable to get associated_data/additional_data from factory[0]: ${(error as Error).message}\n\n`,
      ]);
    }
  }
}

function optionalBase64(value: unknown): Buffer | undefined {
  if (value === undefined || value === "") return undefined;
  return decodeBase64(String(value));
}
