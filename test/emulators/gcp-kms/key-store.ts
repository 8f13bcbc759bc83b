import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { status } from "@grpc/grpc-js";

/** CryptoKeyVersion states the emulator models (resources.proto CryptoKeyVersionState). */
export type VersionState = "ENABLED" | "DISABLED" | "DESTROY_SCHEDULED" | "DESTROYED";

/** One CryptoKeyVersion: a name, a state and (until destroyed) its AES-256 key material. */
export interface KeyVersion {
  readonly name: string;
  readonly tag: Buffer;
  readonly createTime: Date;
  state: VersionState;
  material: Buffer | undefined;
}

/** One symmetric ENCRYPT_DECRYPT CryptoKey with its versions. */
export interface CryptoKey {
  readonly name: string;
  readonly createTime: Date;
  readonly versions: KeyVersion[];
  primary: KeyVersion;
}

/** An error the emulator answers with: a gRPC status code and the real service's wording. */
export class KmsStatusError extends Error {
  readonly code: status;

  constructor(code: status, message: string) {
    super(message);
    this.name = "KmsStatusError";
    this.code = code;
  }
}

const CRYPTO_KEY_NAME = /^projects\/[^/]+\/locations\/[^/]+\/keyRings\/[^/]+\/cryptoKeys\/[^/]+$/;
const FORMAT = 0x01;
const TAG_BYTES = 8;
const IV_BYTES = 12;
const GCM_TAG_BYTES = 16;
const HEADER_BYTES = 1 + TAG_BYTES + IV_BYTES;

// Wording of the real service, as seen in client issues (see the provider's report):
// wrong key or wrong AAD, and bytes that are not a Cloud KMS ciphertext at all.
const WRONG_KEY = "Decryption failed: verify that 'name' refers to the correct CryptoKey.";
const INVALID_CIPHERTEXT = "Decryption failed: the ciphertext is invalid.";

/**
 * The emulator's keys. A ciphertext is `0x01 ‖ version tag (8) ‖ IV (12) ‖ AES-256-GCM
 * ciphertext ‖ GCM tag (16)`, with the request's additional_authenticated_data as GCM AAD: like
 * the real service, the ciphertext names the version that made it, so Decrypt picks it.
 */
export class KeyStore {
  readonly #keys = new Map<string, CryptoKey>();

  /** Creates a CryptoKey with an enabled primary version 1; returns the version name. */
  createKey(name: string): string {
    if (!CRYPTO_KEY_NAME.test(name)) throw new Error(`not a CryptoKey name: ${name}`);
    if (this.#keys.has(name)) throw new Error(`CryptoKey ${name} already exists`);
    const version = newVersion(name, 1);
    this.#keys.set(name, { name, createTime: new Date(), versions: [version], primary: version });
    return version.name;
  }

  /** Adds an enabled version and makes it primary (what a rotation does); returns its name. */
  addVersion(keyName: string): string {
    const key = this.requireKey(keyName);
    const version = newVersion(keyName, key.versions.length + 1);
    key.versions.push(version);
    key.primary = version;
    return version.name;
  }

  /** Makes an existing version the primary one (UpdateCryptoKeyPrimaryVersion). */
  setPrimary(versionName: string): void {
    const version = this.requireVersion(versionName);
    this.requireKey(keyOf(versionName)).primary = version;
  }

  /** Moves a version to a state; DESTROYED also wipes its key material for good. */
  setState(versionName: string, state: VersionState): void {
    const version = this.requireVersion(versionName);
    if (version.state === "DESTROYED" && state !== "DESTROYED") {
      throw new Error(`${versionName} is destroyed and cannot be restored`);
    }
    version.state = state;
    if (state === "DESTROYED" && version.material !== undefined) {
      version.material.fill(0);
      version.material = undefined;
    }
  }

  /** The CryptoKey, or NOT_FOUND as the service answers it. */
  requireKey(name: string): CryptoKey {
    const key = this.#keys.get(name);
    if (key === undefined)
      throw new KmsStatusError(status.NOT_FOUND, `CryptoKey ${name} not found.`);
    return key;
  }

  /** The CryptoKeyVersion, or NOT_FOUND. */
  requireVersion(name: string): KeyVersion {
    const version = this.#keys.get(keyOf(name))?.versions.find((entry) => entry.name === name);
    if (version === undefined) {
      throw new KmsStatusError(status.NOT_FOUND, `CryptoKeyVersion ${name} not found.`);
    }
    return version;
  }

  /** Encrypts under the named version, or the key's primary when `name` is a CryptoKey. */
  encrypt(
    name: string,
    plaintext: Buffer,
    aad: Buffer,
  ): { version: KeyVersion; ciphertext: Buffer } {
    const version = name.includes("/cryptoKeyVersions/")
      ? this.requireVersion(name)
      : this.requireKey(name).primary;
    const material = usable(version);
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv("aes-256-gcm", material, iv);
    cipher.setAAD(aad);
    const sealed = Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
    return { version, ciphertext: Buffer.concat([Buffer.of(FORMAT), version.tag, iv, sealed]) };
  }

  /** Decrypts with the version the ciphertext names, which must belong to CryptoKey `name`. */
  decrypt(
    name: string,
    ciphertext: Buffer,
    aad: Buffer,
  ): { version: KeyVersion; plaintext: Buffer } {
    const key = this.requireKey(name);
    if (ciphertext.length < HEADER_BYTES + GCM_TAG_BYTES || ciphertext[0] !== FORMAT) {
      throw new KmsStatusError(status.INVALID_ARGUMENT, INVALID_CIPHERTEXT);
    }
    const tag = ciphertext.subarray(1, 1 + TAG_BYTES);
    const version = key.versions.find((entry) => entry.tag.equals(tag));
    if (version === undefined) throw new KmsStatusError(status.INVALID_ARGUMENT, WRONG_KEY);
    const material = usable(version);
    const iv = ciphertext.subarray(1 + TAG_BYTES, HEADER_BYTES);
    const body = ciphertext.subarray(HEADER_BYTES, ciphertext.length - GCM_TAG_BYTES);
    const decipher = createDecipheriv("aes-256-gcm", material, iv);
    decipher.setAAD(aad);
    decipher.setAuthTag(ciphertext.subarray(ciphertext.length - GCM_TAG_BYTES));
    try {
      return { version, plaintext: Buffer.concat([decipher.update(body), decipher.final()]) };
    } catch {
      throw new KmsStatusError(status.INVALID_ARGUMENT, WRONG_KEY);
    }
  }

  /** Wipes every version's key material. */
  wipe(): void {
    for (const key of this.#keys.values()) {
      for (const version of key.versions) version.material?.fill(0);
    }
    this.#keys.clear();
  }
}

/** The CryptoKey name a CryptoKeyVersion name belongs to. */
export function keyOf(versionName: string): string {
  return versionName.replace(/\/cryptoKeyVersions\/[^/]+$/, "");
}

function newVersion(keyName: string, number: number): KeyVersion {
  return {
    name: `${keyName}/cryptoKeyVersions/${number}`,
    tag: randomBytes(TAG_BYTES),
    createTime: new Date(),
    state: "ENABLED",
    material: randomBytes(32),
  };
}

// The real service refuses any version that is not ENABLED with FAILED_PRECONDITION, e.g.
// "projects/…/cryptoKeyVersions/1 is not enabled, current state is: DISABLED."
function usable(version: KeyVersion): Buffer {
  if (version.state !== "ENABLED" || version.material === undefined) {
    throw new KmsStatusError(
      status.FAILED_PRECONDITION,
      `${version.name} is not enabled, current state is: ${version.state}.`,
    );
  }
  return version.material;
}
