import { existsSync } from "node:fs";
import pkcs11js, { type PKCS11 } from "pkcs11js";
import { ckrName } from "./pkcs11-errors.js";
import { ProviderError } from "./types.js";

/**
 * One PKCS#11 module (shared library) loaded and initialised for the whole process. A module
 * has one global state per process — C_Initialize, C_Finalize and the login state are not per
 * caller — so every provider instance naming the same module path shares one of these, counted,
 * and only the last one to leave finalises it.
 */
export class SharedModule {
  readonly path: string;
  readonly api: PKCS11;
  #users = 0;
  #generation = 0;
  #inFlight = 0;
  #drained: (() => void)[] = [];
  #resetting: Promise<void> | undefined;

  constructor(path: string, api: PKCS11) {
    this.path = path;
    this.api = api;
  }

  /**
   * Counts re-initialisations: sessions and handles from an earlier generation are gone, and a
   * failure seen under an old generation has already been answered by a reset.
   */
  get generation(): number {
    return this.#generation;
  }

  /**
   * Runs calls into the module, holding off a reset until they are done: C_Finalize while
   * another thread is inside the module is undefined behaviour in PKCS#11.
   */
  async call<T>(operation: (api: PKCS11) => T | Promise<T>): Promise<T> {
    while (this.#resetting !== undefined) await this.#resetting;
    this.#inFlight += 1;
    try {
      return await operation(this.api);
    } finally {
      this.#inFlight -= 1;
      if (this.#inFlight === 0) for (const resolve of this.#drained.splice(0)) resolve();
    }
  }

  /**
   * Finalises and initialises the module again, once for all callers that saw a failure under
   * `seenGeneration`: many modules only notice a token that came back, or recover from a
   * device error, in C_Initialize.
   */
  async reset(seenGeneration: number): Promise<void> {
    while (this.#resetting !== undefined) await this.#resetting;
    if (this.#generation !== seenGeneration) return;
    const resetting = (async () => {
      if (this.#inFlight > 0) await new Promise<void>((resolve) => this.#drained.push(resolve));
      try {
        this.api.C_Finalize();
      } catch {
        // Already finalised (by whoever broke it): initialising again is all that is needed.
      }
      this.#generation += 1;
      initialize(this.api, this.path);
    })();
    this.#resetting = resetting;
    try {
      await resetting;
    } finally {
      this.#resetting = undefined;
    }
  }

  /** Called by an instance that has stopped using the module; the last one finalises it. */
  async release(): Promise<void> {
    this.#users -= 1;
    if (this.#users > 0) return;
    if (modules.get(this.path) === this) modules.delete(this.path);
    while (this.#resetting !== undefined) await this.#resetting;
    if (this.#inFlight > 0) await new Promise<void>((resolve) => this.#drained.push(resolve));
    try {
      this.api.C_Finalize();
    } catch {
      // Nothing is left to release in a module someone else finalised.
    }
    try {
      this.api.close();
    } catch {
      // dlclose failing leaves the library mapped: harmless for a process that stops using it.
    }
  }

  /** Counts one more instance using the module (acquireModule calls it). */
  addUser(): this {
    this.#users += 1;
    return this;
  }
}

const modules = new Map<string, SharedModule>();

/**
 * The process's module for `path`, loaded and initialised on first use. Fails with a
 * ProviderError naming what to fix: a module that does not exist or does not load is `user`
 * (the key reference or the installation is wrong), a module that fails C_Initialize is `other`.
 */
export function acquireModule(path: string): SharedModule {
  const existing = modules.get(path);
  if (existing !== undefined) return existing.addUser();
  const api = new pkcs11js.PKCS11();
  try {
    api.load(path);
  } catch (error) {
    if (!existsSync(path)) {
      throw new ProviderError(
        "user",
        `PKCS#11 module ${path} not found: install it (SoftHSM2: apt-get install softhsm2) or correct module-path in the key reference`,
        { cause: error },
      );
    }
    throw new ProviderError(
      "user",
      `PKCS#11 module ${path} cannot be loaded (${firstLine(error)}): give the path of a PKCS#11 shared library built for this machine in module-path`,
      { cause: error },
    );
  }
  try {
    initialize(api, path);
  } catch (error) {
    try {
      api.close();
    } catch {
      // The load failed halfway; there is nothing more to undo.
    }
    throw error;
  }
  const module = new SharedModule(path, api);
  modules.set(path, module);
  return module.addUser();
}

// CKF_OS_LOCKING_OK: the binding runs encrypt and decrypt on worker threads, so the module
// must lock for itself. Another user of the library in this process may have initialised it.
function initialize(api: PKCS11, path: string): void {
  try {
    api.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
  } catch (error) {
    if (ckrName(error) === "CKR_CRYPTOKI_ALREADY_INITIALIZED") return;
    throw new ProviderError(
      "other",
      `PKCS#11 module ${path} failed to initialise (${ckrName(error) ?? firstLine(error)}): check the module's own configuration (SoftHSM2: SOFTHSM2_CONF and its tokendir, readable by this user)`,
      { cause: error },
    );
  }
}

function firstLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.split("\n")[0]?.slice(0, 300) ?? "";
}
