import {
  type CustodyProvider,
  type ProviderCallObserver,
  ProviderError,
  type ProviderErrorClass,
  type ProviderKeyDescription,
  type ProviderOperation,
  type WrapContext,
} from "./types.js";

/**
 * Wraps a provider so every call to the key service is observed (metrics), whatever the
 * provider. Errors that are not ProviderErrors are classified "other" and rethrown as such, so
 * health and liveness always see a class.
 */
export function instrument(
  provider: CustodyProvider,
  observe: ProviderCallObserver,
): CustodyProvider {
  const timed = async <T>(operation: ProviderOperation, call: () => Promise<T>): Promise<T> => {
    const started = process.hrtime.bigint();
    let result: "ok" | ProviderErrorClass = "ok";
    try {
      return await call();
    } catch (error) {
      const classified =
        error instanceof ProviderError
          ? error
          : new ProviderError(
              "other",
              `${provider.name}: ${(error as Error)?.message ?? "provider call failed"}`,
              { cause: error },
            );
      result = classified.errorClass;
      throw classified;
    } finally {
      observe(provider.name, operation, result, Number(process.hrtime.bigint() - started) / 1e9);
    }
  };
  return {
    name: provider.name,
    describe: (): ProviderKeyDescription => provider.describe(),
    wrapKey: (key: Uint8Array, context: WrapContext, signal?: AbortSignal) =>
      timed("wrapKey", () => provider.wrapKey(key, context, signal)),
    unwrapKey: (wrapped: Uint8Array, context: WrapContext, signal?: AbortSignal) =>
      timed("unwrapKey", () => provider.unwrapKey(wrapped, context, signal)),
    checkHealth: (signal?: AbortSignal) => timed("checkHealth", () => provider.checkHealth(signal)),
    close: () => provider.close(),
  };
}
