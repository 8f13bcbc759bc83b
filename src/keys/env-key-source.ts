import type { DirectKeyProvider, ProviderKeyDescription } from "../../providers/types.js";
import { wipe } from "../crypto/wipe.js";
import type { KeySource } from "./key-source.js";
import { MasterKeySet } from "./master-key-set.js";

/** Master keys held directly by a provider (ENCRYPTION_MASTER_KEY for `local`). */
export class DirectKeySource implements KeySource {
  readonly #provider: DirectKeyProvider;

  constructor(provider: DirectKeyProvider) {
    this.#provider = provider;
  }

  async load(): Promise<MasterKeySet> {
    const keys = this.#provider.loadMasterKeys();
    try {
      return MasterKeySet.of(this.#provider.name, keys);
    } finally {
      wipe(...keys);
    }
  }

  checkHealth(signal: AbortSignal): Promise<void> {
    return this.#provider.checkHealth(signal);
  }

  watch(): () => void {
    // The environment of a running process cannot change: rotation is a restart.
    return () => undefined;
  }

  describe(): ProviderKeyDescription[] {
    return [this.#provider.describe()];
  }

  close(): Promise<void> {
    return this.#provider.close();
  }
}
