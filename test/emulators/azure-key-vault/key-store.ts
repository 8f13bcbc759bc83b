import {
  constants,
  createCipheriv,
  createDecipheriv,
  generateKeyPairSync,
  type KeyObject,
  privateDecrypt,
  publicEncrypt,
  randomBytes,
} from "node:crypto";
import { badParameter, keyDisabled, keyNotFound, VaultError } from "./errors.js";

/** Key types the emulator models: software and HSM RSA keys, and Managed HSM AES keys. */
export type EmulatedKeyType = "RSA" | "RSA-HSM" | "oct-HSM";

/** The key operations that take a payload (the POST routes). */
export type PayloadOperation = "wrapkey" | "unwrapkey" | "encrypt" | "decrypt";

/** What createKey and addVersion accept. */
export interface KeyVersionOptions {
  /** Key type; RSA (2048-bit) by default. */
  type?: EmulatedKeyType;
  /** JWK `key_ops` of the version; all four payload operations by default. */
  keyOps?: string[];
  /** Not-before and expiry attributes. */
  notBefore?: Date;
  expiresOn?: Date;
}

/** One key version: attributes plus real key material. */
export interface KeyVersion {
  readonly name: string;
  readonly version: string;
  readonly type: EmulatedKeyType;
  readonly keyOps: string[];
  readonly created: Date;
  enabled: boolean;
  notBefore: Date | undefined;
  expiresOn: Date | undefined;
  updated: Date;
  readonly privateKey: KeyObject | undefined;
  readonly publicKey: KeyObject | undefined;
  readonly secret: Buffer | undefined;
}

const KEY_NAME = /^[0-9a-zA-Z-]{1,127}$/;
const ALL_OPERATIONS = ["encrypt", "decrypt", "wrapKey", "unwrapKey"];
const MAX_VERSIONS = 32;
// RFC 3394 §2.2.3.1 default initial value, which is what A256KW means (RFC 7518 §4.4).
const AES_KW_IV = Buffer.from("a6a6a6a6a6a6a6a6", "hex");
// The SDK names operations in camelCase in key_ops and in the service's messages.
const OPERATION_NAMES: Record<PayloadOperation, string> = {
  wrapkey: "wrapKey",
  unwrapkey: "unwrapKey",
  encrypt: "encrypt",
  decrypt: "decrypt",
};

/** The emulator's keys: names with ordered versions, each with its own key material. */
export class KeyStore {
  readonly #keys = new Map<string, KeyVersion[]>();

  /** Creates a key with one version; returns it. */
  createKey(name: string, options: KeyVersionOptions = {}): KeyVersion {
    if (!KEY_NAME.test(name)) throw new Error(`not a Key Vault key name: ${name}`);
    if (this.#keys.has(name)) throw new Error(`key ${name} already exists`);
    this.#keys.set(name, []);
    return this.addVersion(name, options);
  }

  /** Adds a new current version to an existing key (Key Vault's "create" on an existing name). */
  addVersion(name: string, options: KeyVersionOptions = {}): KeyVersion {
    const versions = this.#keys.get(name);
    if (versions === undefined) throw new Error(`no key ${name}`);
    if (versions.length >= MAX_VERSIONS) throw new Error(`key ${name} has too many versions`);
    const version = newVersion(name, options);
    versions.push(version);
    return version;
  }

  /** Deletes a key and all its versions (soft-delete is not modelled: it is gone). */
  deleteKey(name: string): void {
    if (!this.#keys.delete(name)) throw new Error(`no key ${name}`);
  }

  /** The version a request names: the given one, or the newest when `version` is empty. */
  find(name: string, version: string | undefined): KeyVersion {
    const versions = this.#keys.get(name);
    if (versions === undefined || versions.length === 0) throw keyNotFound(name);
    if (version === undefined || version === "") return versions.at(-1) as KeyVersion;
    const found = versions.find((candidate) => candidate.version === version.toLowerCase());
    if (found === undefined) throw keyNotFound(`${name}/${version}`);
    return found;
  }

  /** A test's handle on a version it created (throws a plain Error when absent). */
  version(name: string, version: string): KeyVersion {
    try {
      return this.find(name, version);
    } catch {
      throw new Error(`no key version ${name}/${version}`);
    }
  }
}

function newVersion(name: string, options: KeyVersionOptions): KeyVersion {
  const type = options.type ?? "RSA";
  const now = new Date(Math.floor(Date.now() / 1000) * 1000);
  const pair = type === "oct-HSM" ? undefined : generateKeyPairSync("rsa", { modulusLength: 2048 });
  return {
    name,
    version: randomBytes(16).toString("hex"),
    type,
    keyOps: options.keyOps ?? [...ALL_OPERATIONS],
    created: now,
    updated: now,
    enabled: true,
    notBefore: options.notBefore,
    expiresOn: options.expiresOn,
    privateKey: pair?.privateKey,
    publicKey: pair?.publicKey,
    secret: type === "oct-HSM" ? randomBytes(32) : undefined,
  };
}

/** The KeyBundle JSON of a version (public material only, as the service returns it). */
export function keyBundle(version: KeyVersion, vaultUrl: string): Record<string, unknown> {
  const jwk = version.publicKey?.export({ format: "jwk" });
  const seconds = (date: Date | undefined) =>
    date === undefined ? undefined : Math.floor(date.getTime() / 1000);
  return {
    key: {
      kid: kid(version, vaultUrl),
      kty: version.type,
      key_ops: version.keyOps,
      ...(jwk !== undefined && { n: jwk.n, e: jwk.e }),
    },
    attributes: {
      enabled: version.enabled,
      nbf: seconds(version.notBefore),
      exp: seconds(version.expiresOn),
      created: seconds(version.created),
      updated: seconds(version.updated),
      recoveryLevel: "Recoverable+Purgeable",
      recoverableDays: 90,
    },
    tags: {},
  };
}

/** The versioned key identifier, as the service writes it in `kid`. */
export function kid(version: KeyVersion, vaultUrl: string): string {
  return `${vaultUrl}/keys/${version.name}/${version.version}`;
}

/**
 * Runs one payload operation with the version's real key material. Like the service, a
 * disabled version still encrypts and wraps (public-key operations) but refuses to decrypt or
 * unwrap, and expiry or not-before only blocks new encryption (azure-sdk-for-python#45342).
 */
export function runOperation(
  version: KeyVersion,
  operation: PayloadOperation,
  algorithm: string,
  value: Buffer,
): Buffer {
  const name = OPERATION_NAMES[operation];
  const protects = operation === "wrapkey" || operation === "encrypt";
  if (!version.enabled && !protects) throw keyDisabled(name);
  if (!version.keyOps.includes(name)) {
    throw new VaultError(403, "Forbidden", `Operation ${name} is not permitted on this key.`);
  }
  const now = Date.now();
  if (protects && version.expiresOn !== undefined && now >= version.expiresOn.getTime()) {
    throw new VaultError(403, "Forbidden", `Operation ${name} is not allowed on an expired key.`);
  }
  if (protects && version.notBefore !== undefined && now < version.notBefore.getTime()) {
    throw new VaultError(403, "Forbidden", `Operation ${name} is not allowed before nbf.`);
  }
  try {
    if (version.secret !== undefined) return aesKeyWrap(version.secret, algorithm, protects, value);
    return rsaOaep(version, algorithm, protects, value);
  } catch (error) {
    if (error instanceof VaultError) throw error;
    throw badParameter(`${name} failed: the value could not be processed with this key.`);
  }
}

function rsaOaep(version: KeyVersion, algorithm: string, protects: boolean, value: Buffer): Buffer {
  const oaepHash =
    algorithm === "RSA-OAEP-256" ? "sha256" : algorithm === "RSA-OAEP" ? "sha1" : undefined;
  if (oaepHash === undefined) {
    throw badParameter(`Invalid algorithm ${algorithm} for key type ${version.type}.`);
  }
  const padding = constants.RSA_PKCS1_OAEP_PADDING;
  return protects
    ? publicEncrypt({ key: version.publicKey as KeyObject, padding, oaepHash }, value)
    : privateDecrypt({ key: version.privateKey as KeyObject, padding, oaepHash }, value);
}

function aesKeyWrap(secret: Buffer, algorithm: string, protects: boolean, value: Buffer): Buffer {
  if (algorithm !== "A256KW")
    throw badParameter(`Invalid algorithm ${algorithm} for key type oct-HSM.`);
  const cipher = protects
    ? createCipheriv("id-aes256-wrap", secret, AES_KW_IV)
    : createDecipheriv("id-aes256-wrap", secret, AES_KW_IV);
  return Buffer.concat([cipher.update(value), cipher.final()]);
}
