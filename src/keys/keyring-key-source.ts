import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import type { ProviderRegistry } from "../../providers/registry.js";
import { ProviderError, type ProviderKeyDescription } from "../../providers/types.js";
import { deriveKeyId } from "../crypto/derivation.js";
import { MASTER_KEY_BYTES } from "../crypto/master-key.js";
import { wipe } from "../crypto/wipe.js";
import type { KeySource } from "./key-source.js";
import { type Keyring, type KeyringVersion, primaryVersion, readKeyring } from "./keyring-file.js";
import { MasterKeySet } from "./master-key-set.js";

/** Unwraps one keyring version and proves it is the key its id names. */
async function unwrapVersion(
  registry: ProviderRegistry,
  version: KeyringVersion,
  signal?: AbortSignal,
): Promise<Uint8Array> {
  const provider = await registry.provider(version.provider, version.keyRef);
  const key = await provider.unwrapKey(
    Buffer.from(version.wrappedKey, "base64"),
    { keyId: version.keyId },
    signal,
  );
  if (key.length !== MASTER_KEY_BYTES || deriveKeyId(provider.name, key) !== version.keyId) {
    wipe(key);
    throw new ProviderError(
      "corrupt",
      `keyring version ${version.keyId} unwrapped to a different key: the keyring entry is damaged`,
    );
  }
  return key;
}

function digest(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

/**
 * Master keys from a keyring file: every primary and active version is unwrapped through its
 * provider at load, plaintext keys stay in memory only, and the file is polled so an edited
 * keyring (rotate, retire) takes effect without a restart.
 */
export class KeyringKeySource implements KeySource {
  readonly #path: string;
  readonly #registry: ProviderRegistry;
  readonly #pollMs: number;
  #keyring: Keyring | undefined;
  #digest = "";

  constructor(options: { path: string; registry: ProviderRegistry; pollMs: number }) {
    this.#path = options.path;
    this.#registry = options.registry;
    this.#pollMs = options.pollMs;
  }

  async load(signal?: AbortSignal): Promise<MasterKeySet> {
    const { keyring, text } = await readKeyring(this.#path);
    const usable = keyring.versions.filter((version) => version.state !== "retired");
    // Primary first: MasterKeySet seals under its first entry.
    usable.sort((a, b) => Number(b.state === "primary") - Number(a.state === "primary"));
    const results = await Promise.allSettled(
      usable.map((version) => unwrapVersion(this.#registry, version, signal)),
    );
    const keys = results.flatMap((result) => (result.status === "fulfilled" ? [result.value] : []));
    try {
      const failure = results.find((result) => result.status === "rejected");
      if (failure !== undefined) throw failure.reason;
      const retired = keyring.versions
        .filter((version) => version.state === "retired")
        .map((version) => version.keyId);
      const set = new MasterKeySet(
        usable.map((version, index) => ({
          provider: version.provider,
          key: keys[index] as Uint8Array,
        })),
        retired,
      );
      this.#keyring = keyring;
      this.#digest = digest(text);
      return set;
    } finally {
      wipe(...keys);
    }
  }

  /** Re-unwraps the primary version: proves the provider key is still usable, not just present. */
  async checkHealth(signal: AbortSignal): Promise<void> {
    if (this.#keyring === undefined)
      throw new ProviderError("other", "the keyring has not been loaded yet");
    wipe(await unwrapVersion(this.#registry, primaryVersion(this.#keyring), signal));
  }

  watch(onChange: () => void): () => void {
    const timer = setInterval(() => {
      readFile(this.#path, "utf8").then(
        (text) => {
          if (digest(text) !== this.#digest) onChange();
        },
        // A missing file mid-update (ConfigMap symlink swap) is retried on the next tick.
        () => undefined,
      );
    }, this.#pollMs);
    timer.unref();
    return () => clearInterval(timer);
  }

  describe(): ProviderKeyDescription[] {
    const versions = this.#keyring?.versions ?? [];
    const unique = new Map(
      versions.map((version) => [
        `${version.provider} ${version.keyRef}`,
        { provider: version.provider, keyRef: version.keyRef },
      ]),
    );
    return [...unique.values()];
  }

  close(): Promise<void> {
    return this.#registry.close();
  }
}
