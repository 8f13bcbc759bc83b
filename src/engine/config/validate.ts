import type { ConfigProblem } from "./config-error.js";
import type { EncryptionConfigurationWire, KeyWire, KmsWire, ProviderWire } from "./decode.js";
import { decodeGoStdBase64 } from "./go-base64.js";
import {
  ANY_GROUP_ANY_RESOURCE,
  type GroupResource,
  parseGroupResource,
  sameGroupResource,
} from "./group-resource.js";
import { parseKmsEndpoint } from "./kms-endpoint.js";

/**
 * kube-apiserver's ValidateEncryptionConfiguration (apis/apiserver/validation), rule for rule
 * and in its order, returning every problem like a field.ErrorList. The detail texts keep the
 * apiserver's wording, extended where it would not say what to do.
 */

/** AES accepts 16, 24 or 32-byte keys for both aesgcm and aescbc (crypto/aes.NewCipher). */
const AES_KEY_SIZES = [16, 24, 32] as const;
const SECRETBOX_KEY_SIZES = [32] as const;

/** Resources kept in etcd without a REST API: the apiserver refuses to encrypt them. */
const NON_REST_RESOURCES = new Set([
  "apiserveripinfo",
  "serviceipallocations",
  "servicenodeportallocations",
]);

interface ValidationOptions {
  /** Automatic reload is on: kms v1 names must then be unique too. */
  readonly reload: boolean;
}

export function validateEncryptionConfiguration(
  config: EncryptionConfigurationWire,
  options: ValidationOptions,
): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  if (config.resources.length === 0) {
    return [{ path: "resources", message: "at least one resources is required" }];
  }

  // Every kms name seen so far, v1 and v2, in file order.
  const kmsNames = new Set<string>();
  config.resources.forEach((entry, i) => {
    const resourcesPath = `resources[${i}].resources`;
    const providersPath = `resources[${i}].providers`;
    if (entry.resources.length === 0) {
      problems.push({
        path: resourcesPath,
        message: `at least one ${resourcesPath} is required: list resources such as secrets, deployments.apps, *.apps, *. or *.*`,
      });
    }
    problems.push(...validateResourceOverlap(entry.resources, resourcesPath));
    problems.push(...validateResourceNames(entry.resources, resourcesPath));
    if (entry.providers.length === 0) {
      problems.push({
        path: providersPath,
        message: `at least one ${providersPath} is required: list providers such as kms or identity`,
      });
    }
    entry.providers.forEach((provider, j) => {
      const path = `${providersPath}[${j}]`;
      problems.push(...validateSingleProvider(provider, path));
      // Same precedence as the apiserver: with several members set, only the first is checked.
      if (provider.kms !== undefined) {
        problems.push(...validateKms(provider.kms, `${path}.kms`, kmsNames, options.reload));
        kmsNames.add(provider.kms.name);
      } else if (provider.aesgcm !== undefined) {
        problems.push(...validateKeys(provider.aesgcm.keys, `${path}.aesgcm.keys`, AES_KEY_SIZES));
      } else if (provider.aescbc !== undefined) {
        problems.push(...validateKeys(provider.aescbc.keys, `${path}.aescbc.keys`, AES_KEY_SIZES));
      } else if (provider.secretbox !== undefined) {
        problems.push(
          ...validateKeys(provider.secretbox.keys, `${path}.secretbox.keys`, SECRETBOX_KEY_SIZES),
        );
      }
    });
  });
  return problems;
}

/**
 * Within one list: any repeated resource is a duplicate, and a wildcard next to anything it
 * covers is an overlap. The pairwise walk mirrors the apiserver's exactly, including that a
 * second identical pair of wildcards (`*.` twice) counts as both duplicate and overlap.
 */
function validateResourceOverlap(resources: readonly string[], path: string): ConfigProblem[] {
  if (resources.length < 2) return [];
  const parsed = resources.map(parseGroupResource);
  let hasDuplicate = false;
  let hasOverlap = false;
  parsed.forEach((r1, i) => {
    parsed.forEach((r2, j) => {
      if (i === j) return;
      if (sameGroupResource(r1, r2) && !hasDuplicate) {
        hasDuplicate = true;
        return;
      }
      if (hasOverlap) return;
      if (sameGroupResource(r1, ANY_GROUP_ANY_RESOURCE)) {
        hasOverlap = true;
        return;
      }
      if (r1.group !== r2.group) return;
      if (r1.resource === "*" || r2.resource === "*") hasOverlap = true;
    });
  });
  const problems: ConfigProblem[] = [];
  if (hasDuplicate) {
    problems.push({
      path,
      message: "the same resource cannot be specified multiple times: remove the repeated entry",
    });
  }
  if (hasOverlap) {
    problems.push({
      path,
      message:
        "using overlapping resources such as 'secrets' and '*.' in the same resource list is not allowed as they will be masked: keep only the wildcard, or move the specific resource to an earlier entry",
    });
  }
  return problems;
}

function validateResourceNames(resources: readonly string[], path: string): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  resources.forEach((resource, j) => {
    const message = resourceNameProblem(resource);
    if (message !== undefined) problems.push({ path: `${path}[${j}]`, message });
  });
  return problems;
}

/** The first rule a resource name breaks, checked in the apiserver's order. */
function resourceNameProblem(resource: string): string | undefined {
  if (resource.toLowerCase() !== resource) {
    return "resource name should not contain capital letters: write it in lowercase";
  }
  if (resource === "*") {
    return "use '*.' to encrypt all the resources from core API group or *.* to encrypt all resources";
  }
  if (NON_REST_RESOURCES.has(resource)) {
    return "resources which do not have REST API/s cannot be encrypted: remove it";
  }
  const gr: GroupResource = parseGroupResource(resource);
  if (gr.group === "events.k8s.io") {
    return "'*.events.k8s.io' objects are stored using the 'events' API group in etcd. Use 'events' instead in the config file";
  }
  if (gr.group === "extensions") {
    return "'extensions' group has been removed and cannot be used for encryption: name the resource in its current group (e.g. deployments.apps)";
  }
  if (gr.group === "*" && gr.resource !== "*") {
    return "encrypting the same resource across groups is not supported: name each group (resource.group) or use *.*";
  }
  return undefined;
}

function validateSingleProvider(provider: ProviderWire, path: string): ConfigProblem[] {
  const found = [
    provider.kms !== undefined,
    provider.aesgcm !== undefined,
    provider.aescbc !== undefined,
    provider.secretbox !== undefined,
    provider.identity,
  ].filter(Boolean).length;
  if (found === 0) {
    return [
      {
        path,
        message:
          "provider does not contain any of the expected providers: KMS, AESGCM, AESCBC, Secretbox, Identity (write one of kms, aesgcm, aescbc, secretbox or identity: {})",
      },
    ];
  }
  if (found > 1) {
    return [
      {
        path,
        message:
          "more than one provider specified in a single element, should split into different list elements",
      },
    ];
  }
  return [];
}

function validateKeys(
  keys: readonly KeyWire[],
  path: string,
  sizes: readonly number[],
): ConfigProblem[] {
  if (keys.length === 0) {
    return [{ path, message: "at least one keys is required: add a key with a name and a secret" }];
  }
  return keys.flatMap((key, i) => validateKey(key, `${path}[${i}]`, sizes));
}

function validateKey(key: KeyWire, path: string, sizes: readonly number[]): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  if (key.name === "") {
    problems.push({ path: `${path}.name`, message: "name is a mandatory field for a key" });
  }
  if (key.secret === "") {
    problems.push({ path: `${path}.secret`, message: "secret is a mandatory field for a key" });
    return problems;
  }
  // Messages about the secret never include it (the apiserver prints "REDACTED").
  const secret = decodeGoStdBase64(key.secret);
  if (secret === undefined) {
    problems.push({
      path: `${path}.secret`,
      message: "secrets must be base64 encoded (standard alphabet, with = padding)",
    });
  } else if (!sizes.includes(secret.length)) {
    problems.push({
      path: `${path}.secret`,
      message: `secret is not of the expected length, got ${secret.length}, expected one of [${sizes.join(" ")}] (bytes after base64 decoding)`,
    });
  }
  return problems;
}

function validateKms(
  kms: KmsWire,
  path: string,
  seenNames: ReadonlySet<string>,
  reload: boolean,
): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const isV1 = kms.apiVersion === "v1";

  if (kms.name === "") {
    problems.push({ path: `${path}.name`, message: "name is a mandatory field for a provider" });
  }
  // The name is part of every stored prefix (k8s:enc:kms:v2:<name>:), so v2 forbids ':'.
  if (!isV1 && kms.name.includes(":")) {
    problems.push({
      path: `${path}.name`,
      message: `invalid KMS provider name ${kms.name}, must not contain ':'`,
    });
  }
  // v2 names must always be unique; v1 names only when the file is reloaded automatically.
  if ((reload || !isV1) && seenNames.has(kms.name)) {
    problems.push({
      path: `${path}.name`,
      message: `duplicate KMS provider name ${kms.name}, names must be unique`,
    });
  }

  if (kms.timeoutNanos <= 0n) {
    problems.push({ path: `${path}.timeout`, message: "timeout should be a positive value" });
  }

  const endpoint = parseKmsEndpoint(kms.endpoint);
  if (!endpoint.ok) {
    problems.push({ path: `${path}.endpoint`, message: endpoint.message });
  }

  if (!isV1 && kms.cachesize !== undefined) {
    problems.push({
      path: `${path}.cachesize`,
      message: "cachesize is not supported in v2: remove it",
    });
  }
  if (isV1 && kms.cachesize === 0) {
    problems.push({
      path: `${path}.cachesize`,
      message: "cachesize should be a positive value, or negative to disable",
    });
  }

  if (!isV1 && kms.apiVersion !== "v2") {
    problems.push({
      path: `${path}.apiVersion`,
      message: `unsupported apiVersion ${kms.apiVersion} for KMS provider, only v1 and v2 are supported`,
    });
  }
  return problems;
}
