import {
  ANY_GROUP_ANY_RESOURCE,
  anyResourceIn,
  groupResourceKey,
  parseGroupResource,
} from "./group-resource.js";
import type { EncryptionConfiguration, ProviderConfig } from "./types.js";

const IDENTITY_ONLY: readonly ProviderConfig[] = Object.freeze([
  Object.freeze({ type: "identity" }),
]);

/** Per configuration, its providers by group/resource key, built on first lookup. */
const indexes = new WeakMap<
  EncryptionConfiguration,
  ReadonlyMap<string, readonly ProviderConfig[]>
>();

/**
 * The providers that apply to `resource` (`secrets`, `deployments.apps`, `users.obot.obot.ai`:
 * resource, then its group after the first dot), chosen as kube-apiserver does: the exact
 * resource, else `*.group` (`*.` for the core group), else `*.*`, else identity alone.
 * The first provider writes; reads try them in order.
 */
export function providersFor(
  config: EncryptionConfiguration,
  resource: string,
): readonly ProviderConfig[] {
  const index = indexOf(config);
  const gr = parseGroupResource(resource);
  for (const candidate of [gr, anyResourceIn(gr), ANY_GROUP_ANY_RESOURCE]) {
    const providers = index.get(groupResourceKey(candidate));
    if (providers !== undefined) return providers;
  }
  return IDENTITY_ONLY;
}

function indexOf(config: EncryptionConfiguration): ReadonlyMap<string, readonly ProviderConfig[]> {
  let index = indexes.get(config);
  if (index === undefined) {
    // A resource named in several entries gets all their providers, earlier entries first,
    // as the apiserver appends them to one prefix list.
    const merged = new Map<string, ProviderConfig[]>();
    for (const rule of config.rules) {
      for (const resource of rule.resources) {
        const key = groupResourceKey(parseGroupResource(resource));
        merged.set(key, [...(merged.get(key) ?? []), ...rule.providers]);
      }
    }
    index = new Map([...merged].map(([key, providers]) => [key, Object.freeze(providers)]));
    indexes.set(config, index);
  }
  return index;
}
