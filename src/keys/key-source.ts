import type { ProviderKeyDescription } from "../../providers/types.js";
import type { MasterKeySet } from "./master-key-set.js";

/**
 * Where the daemon's master keys come from: the environment (local provider) or a keyring
 * file unwrapped through custody providers. Cloud providers are called here only — at start,
 * on a keyring change and by the health check — never per request (SPEC.md §3).
 */
export interface KeySource {
  /** Loads every usable master-key version; the caller owns (and disposes) the set. */
  load(signal?: AbortSignal): Promise<MasterKeySet>;
  /** Resolves when custody still works right now; rejects with a classified ProviderError. */
  checkHealth(signal: AbortSignal): Promise<void>;
  /** Calls `onChange` when the source changes (an edited keyring); returns a stop function. */
  watch(onChange: () => void): () => void;
  /** Public description of the provider keys in use, for logs and `status`. */
  describe(): ProviderKeyDescription[];
  /** Releases provider clients. */
  close(): Promise<void>;
}
