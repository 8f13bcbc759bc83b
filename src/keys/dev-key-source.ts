import { readFile } from "node:fs/promises";
import type { ProviderKeyDescription } from "../../providers/types.js";
import { decodeMasterKey } from "../crypto/master-key.js";
import { wipe } from "../crypto/wipe.js";
import type { KeySource } from "./key-source.js";
import { MasterKeySet } from "./master-key-set.js";

/**
 * The development master key (`serve --dev`): one version, read from its 0600 file straight
 * into a buffer that is wiped once the key set holds it, so the key never travels as a string
 * through the process environment. Its key ids are `local:` ones, as with ENCRYPTION_MASTER_KEY.
 */
export class DevKeySource implements KeySource {
  readonly #path: string;

  constructor(path: string) {
    this.#path = path;
  }

  async load(): Promise<MasterKeySet> {
    const text = await readFile(this.#path);
    let key: Uint8Array | undefined;
    try {
      key = decodeMasterKey(text.toString("latin1"), this.#path);
      return MasterKeySet.of("local", [key]);
    } finally {
      wipe(text, key);
    }
  }

  async checkHealth(): Promise<void> {
    // The key was read at load and lives in memory: nothing remote can revoke it.
  }

  watch(): () => void {
    return () => undefined;
  }

  describe(): ProviderKeyDescription[] {
    return [{ provider: "local", keyRef: `file:${this.#path}` }];
  }

  async close(): Promise<void> {
    // Nothing is held: the key set owns the key.
  }
}
