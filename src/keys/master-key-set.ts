import { deriveKeyId, deriveWorkspaceKey } from "../crypto/derivation.js";
import { MASTER_KEY_BYTES } from "../crypto/master-key.js";
import { wipe } from "../crypto/wipe.js";
import { KmsEnvelopeError, UnknownKeyIdError } from "../errors.js";

// Workspace keys are cached because deriving one costs an HMAC per request; the bound keeps a
// tenant-heavy field service from growing the cache without limit.
const WORKSPACE_CACHE_LIMIT = 4096;

/** One master-key version held in daemon memory, with its derived workspace keys. */
export class MasterKeyVersion {
  /** Public identifier of this version (SPEC.md §2). */
  readonly keyId: string;
  /** The custody provider that keeps this version (the key id's prefix). */
  readonly provider: string;
  readonly #masterKey: Uint8Array;
  readonly #workspaceKeys = new Map<string, Uint8Array>();
  // The KMS path asks for the same workspace on every call; it skips the LRU bookkeeping.
  #newest: { workspace: string; key: Uint8Array } | undefined;

  constructor(provider: string, masterKey: Uint8Array) {
    if (masterKey.length !== MASTER_KEY_BYTES) {
      throw new KmsEnvelopeError(
        "INVALID_MASTER_KEY",
        `a master key must be ${MASTER_KEY_BYTES} bytes`,
      );
    }
    this.#masterKey = Uint8Array.from(masterKey);
    this.provider = provider;
    this.keyId = deriveKeyId(provider, this.#masterKey);
  }

  /** The workspace key W for `workspace`, derived once and cached. */
  workspaceKey(workspace: string): Uint8Array {
    const newest = this.#newest;
    if (newest !== undefined && newest.workspace === workspace) return newest.key;
    const cached = this.#workspaceKeys.get(workspace);
    if (cached !== undefined) {
      // Re-inserting keeps Map order least-recently-used first, so eviction drops cold tenants.
      this.#workspaceKeys.delete(workspace);
      this.#workspaceKeys.set(workspace, cached);
      this.#newest = { workspace, key: cached };
      return cached;
    }
    if (this.#workspaceKeys.size >= WORKSPACE_CACHE_LIMIT) {
      const oldest = this.#workspaceKeys.keys().next().value as string;
      wipe(this.#workspaceKeys.get(oldest));
      this.#workspaceKeys.delete(oldest);
    }
    const derived = deriveWorkspaceKey(this.#masterKey, workspace);
    this.#workspaceKeys.set(workspace, derived);
    this.#newest = { workspace, key: derived };
    return derived;
  }

  /** A fresh copy of the master key, for a worker thread; the receiver must wipe it. */
  copyMasterKey(): Uint8Array {
    return Uint8Array.from(this.#masterKey);
  }

  /** Zeroes the master key and every derived key. */
  dispose(): void {
    for (const key of this.#workspaceKeys.values()) wipe(key);
    this.#workspaceKeys.clear();
    this.#newest = undefined;
    wipe(this.#masterKey);
  }
}

/** The master-key versions a daemon holds: one primary that encrypts, all that decrypt. */
export class MasterKeySet {
  /** The version new values are sealed under. */
  readonly primary: MasterKeyVersion;
  readonly #byKeyId: ReadonlyMap<string, MasterKeyVersion>;

  readonly #retiredKeyIds: ReadonlySet<string>;

  /**
   * Builds the set from raw keys, primary first, each with the provider that keeps it (the
   * key-id prefix). The caller keeps ownership of the key bytes. `retiredKeyIds` are versions
   * deliberately not loaded, so a value under one gets a clear refusal, not "unknown".
   */
  constructor(
    keys: readonly { provider: string; key: Uint8Array }[],
    retiredKeyIds: readonly string[] = [],
  ) {
    const versions = new Map<string, MasterKeyVersion>();
    for (const { provider, key } of keys) {
      const version = new MasterKeyVersion(provider, key);
      if (versions.has(version.keyId)) {
        version.dispose();
        continue;
      }
      versions.set(version.keyId, version);
    }
    const primary = versions.values().next().value;
    if (primary === undefined) {
      throw new KmsEnvelopeError("MISSING_MASTER_KEY", "no master key was provided");
    }
    this.primary = primary;
    this.#byKeyId = versions;
    this.#retiredKeyIds = new Set(retiredKeyIds);
  }

  /** A set whose keys all belong to one provider, primary first. */
  static of(provider: string, keys: readonly Uint8Array[]): MasterKeySet {
    return new MasterKeySet(keys.map((key) => ({ provider, key })));
  }

  /** Key ids of every version, primary first. */
  get keyIds(): string[] {
    return [...this.#byKeyId.keys()];
  }

  /** The version that sealed a value, by its key id; never guesses (SPEC.md §2). */
  version(keyId: string): MasterKeyVersion {
    const version = this.#byKeyId.get(keyId);
    if (version !== undefined) return version;
    if (this.#retiredKeyIds.has(keyId)) {
      throw new KmsEnvelopeError(
        "KEY_RETIRED",
        `key id ${keyId} is retired in the keyring: its values can no longer be decrypted; set its state back to active to read them`,
      );
    }
    throw new UnknownKeyIdError(keyId);
  }

  /**
   * Everything a worker thread needs to build an identical set of its own: fresh copies of
   * every master key, primary first, which the receiver owns and must wipe, and the retired
   * key ids.
   */
  copyForWorker(): {
    keys: { provider: string; key: Uint8Array }[];
    retiredKeyIds: string[];
  } {
    return {
      keys: [...this.#byKeyId.values()].map((version) => ({
        provider: version.provider,
        key: version.copyMasterKey(),
      })),
      retiredKeyIds: [...this.#retiredKeyIds],
    };
  }

  /** Zeroes every version. */
  dispose(): void {
    for (const version of this.#byKeyId.values()) version.dispose();
  }
}
