import type { ConfigProblem } from "./config-error.js";
import type { EncryptionConfigurationWire, KeyListWire, KmsWire, ProviderWire } from "./decode.js";
import { decodeGoStdBase64 } from "./go-base64.js";
import {
  ANY_GROUP_ANY_RESOURCE,
  anyResourceIn,
  formatGroupResource,
  type GroupResource,
  groupResourceKey,
  parseGroupResource,
} from "./group-resource.js";
import { parseKmsEndpoint } from "./kms-endpoint.js";
import type { AesKeyConfig, ProviderConfig, ResourceRule } from "./types.js";

/**
 * Turns a validated configuration into the immutable model, applying the checks the
 * apiserver makes only while building its transformers (encryptionconfig/config.go): the
 * KMSv1 feature gate and wildcard masking across entries. Like the apiserver, it stops at the
 * first such problem, taking entries in file order and, within one, providers then resources.
 */

interface BuildOptions {
  readonly allowKmsV1: boolean;
}

type BuildResult =
  | { readonly ok: true; readonly rules: readonly ResourceRule[] }
  | { readonly ok: false; readonly problem: ConfigProblem };

const IDENTITY: ProviderConfig = Object.freeze({ type: "identity" });

export function buildModel(
  config: EncryptionConfigurationWire,
  options: BuildOptions,
): BuildResult {
  const configured = new Set<string>(); // group/resource keys claimed by earlier resources
  const rules: ResourceRule[] = [];
  for (const [i, entry] of config.resources.entries()) {
    for (const [j, provider] of entry.providers.entries()) {
      if (provider.kms?.apiVersion === "v1" && !options.allowKmsV1) {
        return {
          ok: false,
          problem: {
            path: `resources[${i}].providers[${j}].kms.apiVersion`,
            message:
              "KMSv1 is deprecated and will only receive security updates going forward: use apiVersion: v2, or enable KMSv1 explicitly (allowKmsV1, like kube-apiserver's --feature-gates=KMSv1=true) to use the deprecated provider",
          },
        };
      }
    }
    for (const [j, resource] of entry.resources.entries()) {
      const gr = parseGroupResource(resource);
      const masking = [anyResourceIn(gr), ANY_GROUP_ANY_RESOURCE].find((rule) =>
        configured.has(groupResourceKey(rule)),
      );
      if (masking !== undefined) {
        return {
          ok: false,
          problem: maskedProblem(`resources[${i}].resources[${j}]`, gr, masking),
        };
      }
      configured.add(groupResourceKey(gr));
    }
    rules.push(
      Object.freeze({
        resources: Object.freeze([...entry.resources]),
        providers: Object.freeze(entry.providers.map(toProviderConfig)),
      }),
    );
  }
  return { ok: true, rules: Object.freeze(rules) };
}

function maskedProblem(path: string, gr: GroupResource, masking: GroupResource): ConfigProblem {
  return {
    path,
    message: `resource ${JSON.stringify(formatGroupResource(gr))} is masked by earlier rule ${JSON.stringify(formatGroupResource(masking))}: an earlier entry already covers it, so remove it or move it before that entry`,
  };
}

function toProviderConfig(provider: ProviderWire): ProviderConfig {
  // Validation guarantees exactly one member is set.
  if (provider.kms !== undefined) return toKmsConfig(provider.kms);
  if (provider.aesgcm !== undefined) return aesConfig("aesgcm", provider.aesgcm);
  if (provider.aescbc !== undefined) return aesConfig("aescbc", provider.aescbc);
  if (provider.secretbox !== undefined) return aesConfig("secretbox", provider.secretbox);
  return IDENTITY;
}

function aesConfig(type: "aesgcm" | "aescbc" | "secretbox", list: KeyListWire): ProviderConfig {
  const keys = list.keys.map(
    (key): AesKeyConfig =>
      Object.freeze({ name: key.name, secret: validated(decodeGoStdBase64(key.secret)) }),
  );
  return Object.freeze({ type, keys: Object.freeze(keys) });
}

function toKmsConfig(kms: KmsWire): ProviderConfig {
  const endpoint = parseKmsEndpoint(kms.endpoint);
  return Object.freeze({
    type: "kms",
    apiVersion: kms.apiVersion === "v1" ? "v1" : "v2",
    name: kms.name,
    endpoint: kms.endpoint,
    socketPath: validated(endpoint.ok ? endpoint.socketPath : undefined),
    cacheSize: kms.apiVersion === "v1" ? kms.cachesize : undefined,
    timeoutMs: Number(kms.timeoutNanos) / 1_000_000,
  });
}

/** A value validation has already vouched for; its absence would be a bug here, not bad input. */
function validated<T>(value: T | undefined): T {
  if (value === undefined)
    throw new Error("EncryptionConfiguration model built from unvalidated input");
  return value;
}
