import { isAbsolute, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { providerNameSchema } from "../src/config/schemas.js";
import { ConfigError, errorMessage } from "../src/errors.js";
import { instrument } from "./instrumented.js";
import type { CustodyProvider, ProviderModule, ProviderOptions } from "./types.js";

// Imported on first use only, so a daemon loads just the SDK of the cloud it talks to (and
// the pkcs11 provider's native binding only where a keyring names it).
const BUILT_IN: Record<string, () => Promise<unknown>> = Object.fromEntries(
  ["local", "aws", "azure", "gcp", "vault", "pkcs11"].map((name) => [
    name,
    () => import(`./${name}.js`),
  ]),
);

const METHODS = ["describe", "wrapKey", "unwrapKey", "checkHealth", "close"] as const;

/** The built-in provider names. */
const BUILT_IN_PROVIDERS = Object.keys(BUILT_IN);

function checkModule(candidate: unknown, source: string): ProviderModule {
  const module = candidate as Partial<ProviderModule> | undefined;
  if (
    !providerNameSchema.safeParse(module?.name).success ||
    typeof module?.createProvider !== "function"
  ) {
    throw new ConfigError(
      `provider module ${source}`,
      "does not export a lowercase `name` and a `createProvider` function",
      'export `name` (lowercase, e.g. "my-hsm") and `createProvider(keyRef, options)`',
    );
  }
  return module as ProviderModule;
}

/** Checks at start-up that a provider instance really implements the custody interface. */
export function checkProvider(provider: unknown, module: ProviderModule): CustodyProvider {
  const candidate = provider as Record<string, unknown> | undefined;
  const missing = METHODS.filter((method) => typeof candidate?.[method] !== "function");
  if (candidate === undefined || candidate.name !== module.name || missing.length > 0) {
    throw new ConfigError(
      `provider ${module.name}`,
      `does not implement the custody interface${missing.length > 0 ? `: missing ${missing.join(", ")}` : ""}`,
      `give its instances the name "${module.name}" and the methods ${METHODS.join(", ")}`,
    );
  }
  return provider as CustodyProvider;
}

/**
 * Loads a provider module: a built-in name, a path (./vault-provider.js) or a package name.
 * Paths are resolved against the working directory.
 */
export async function loadProviderModule(specifier: string): Promise<ProviderModule> {
  const builtIn = BUILT_IN[specifier];
  if (builtIn !== undefined) return checkModule(await builtIn(), specifier);
  const isPath = specifier.startsWith(".") || isAbsolute(specifier);
  const target = isPath ? pathToFileURL(resolve(specifier)).href : specifier;
  let loaded: unknown;
  try {
    loaded = await import(target);
  } catch (error) {
    throw new ConfigError(
      `provider ${JSON.stringify(specifier)}`,
      // Node names the importing file, which is ours, not anything the operator can fix.
      `cannot be loaded: ${errorMessage(error).replace(/ imported from \S+$/, "")}`,
      `give one of ${BUILT_IN_PROVIDERS.join(", ")}, a module path or a package name`,
      { cause: error },
    );
  }
  return checkModule(loaded, specifier);
}

/**
 * Provider instances by name and key reference, created on first use and closed together.
 * Custom modules are registered up front so a keyring that names them can be opened.
 */
export class ProviderRegistry {
  readonly #options: ProviderOptions;
  readonly #modules = new Map<string, ProviderModule>();
  readonly #instances = new Map<string, Promise<CustodyProvider>>();

  constructor(options: ProviderOptions) {
    this.#options = options;
  }

  /** Registers a custom provider module (path or package); returns its name. */
  async register(specifier: string): Promise<string> {
    const module = await loadProviderModule(specifier);
    this.#modules.set(module.name, module);
    return module.name;
  }

  /** The provider for `name` and `keyRef`, created once. */
  provider(name: string, keyRef: string): Promise<CustodyProvider> {
    const cacheKey = `${name}\u0000${keyRef}`;
    let instance = this.#instances.get(cacheKey);
    if (instance === undefined) {
      instance = this.#create(name, keyRef);
      this.#instances.set(cacheKey, instance);
      instance.catch(() => this.#instances.delete(cacheKey));
    }
    return instance;
  }

  /** Closes every provider created so far. */
  async close(): Promise<void> {
    const instances = [...this.#instances.values()];
    this.#instances.clear();
    await Promise.allSettled(instances.map(async (instance) => (await instance).close()));
  }

  async #create(name: string, keyRef: string): Promise<CustodyProvider> {
    let module = this.#modules.get(name);
    if (module === undefined) {
      if (BUILT_IN[name] === undefined) {
        throw new ConfigError(
          `provider "${name}"`,
          "is not built in, and no --provider-module registered it",
          "pass --provider-module with its module",
        );
      }
      module = await loadProviderModule(name);
      this.#modules.set(name, module);
    }
    const options = this.#options;
    const { name: providerName } = module;
    const provider = checkProvider(
      await module.createProvider(keyRef, {
        ...options,
        onAttemptFailed: (errorClass) => options.observeAttempt?.(providerName, errorClass),
      }),
      module,
    );
    return options.observe === undefined ? provider : instrument(provider, options.observe);
  }
}
