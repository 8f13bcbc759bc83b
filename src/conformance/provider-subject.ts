import { checkProvider, loadProviderModule } from "../../providers/registry.js";
import type { ProviderOptions } from "../../providers/types.js";
import type { ProviderFaults, ProviderSubject } from "./provider/index.js";

/** A provider module (built-in name, path or package) as the daemon would load it. */
interface ModuleSubjectOptions {
  /** `local`, `aws`, …, `./my-hsm.js` or a package name. */
  specifier: string;
  /** The key reference under test. */
  keyRef: string;
  /** Another key of the same kind, for the wrong-key rule. */
  otherKeyRef?: string | undefined;
  /** What the module's factory receives (deadline, attempts, endpoint, environment). */
  options: ProviderOptions;
  /** Fault controls, when the caller can drive the key service (tests); none otherwise. */
  faults?: ProviderFaults | undefined;
}

/**
 * A subject built exactly as `serve --provider-module` builds providers: the module is loaded
 * and checked by the registry's own code, and every instance is checked against the interface.
 */
export async function moduleSubject(options: ModuleSubjectOptions): Promise<ProviderSubject> {
  const module = await loadProviderModule(options.specifier);
  const open = async (keyRef: string) =>
    checkProvider(await module.createProvider(keyRef, options.options), module);
  const { otherKeyRef } = options;
  return {
    label: `${module.name} (${options.specifier}, ${options.keyRef})`,
    open: () => open(options.keyRef),
    ...(otherKeyRef !== undefined && { openOtherKey: () => open(otherKeyRef) }),
    timeoutMs: options.options.timeoutMs,
    ...(options.faults !== undefined && { faults: options.faults }),
  };
}
