import { instrument } from "../../providers/instrumented.js";
import type {
  CustodyProvider,
  DirectKeyProvider,
  ProviderCallObserver,
  ProviderKeyDescription,
} from "../../providers/types.js";
import { wipe } from "../crypto/wipe.js";
import type { KeySource } from "./key-source.js";
import { MasterKeySet } from "./master-key-set.js";

/** Master keys held directly by a provider (ENCRYPTION_MASTER_KEY for `local`). */
export class DirectKeySource implements KeySource {
  readonly #provider: DirectKeyProvider;
  readonly #checked: CustodyProvider;

  /** `observe` receives the provider's health checks (metrics). */
  constructor(provider: DirectKeyProvider, observe?: ProviderCallObserver) {
    this.#provider = provider;
    this.#checked = observe === undefined ? provider : instrument(provider, observe);
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
    return this.#checked.checkHealth(signal);
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
