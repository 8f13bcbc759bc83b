import type { ConfigProblem } from "./config-error.js";
import { parseGoDuration } from "./go-duration.js";

/**
 * Strict decoding of an EncryptionConfiguration document (already parsed from YAML/JSON) into
 * its wire form, with the v1 defaults applied, as kube-apiserver's strict codec does:
 * field names are case-sensitive, an unknown or misspelt field is an error, a value of the
 * wrong type is an error, and `null` means "not set" (Go's zero value or nil pointer).
 */

export interface KeyWire {
  readonly name: string;
  readonly secret: string;
}

export interface KeyListWire {
  readonly keys: readonly KeyWire[];
}

export interface KmsWire {
  readonly apiVersion: string;
  readonly name: string;
  readonly endpoint: string;
  readonly cachesize: number | undefined;
  readonly timeoutNanos: bigint;
}

/** One `providers[j]` element; more than one member set is a validation error, not a decode error. */
export interface ProviderWire {
  readonly aesgcm: KeyListWire | undefined;
  readonly aescbc: KeyListWire | undefined;
  readonly secretbox: KeyListWire | undefined;
  readonly identity: boolean;
  readonly kms: KmsWire | undefined;
}

interface ResourceConfigurationWire {
  readonly resources: readonly string[];
  readonly providers: readonly ProviderWire[];
}

export interface EncryptionConfigurationWire {
  readonly resources: readonly ResourceConfigurationWire[];
}

type DecodeResult =
  | { readonly ok: true; readonly config: EncryptionConfigurationWire }
  | { readonly ok: false; readonly problems: readonly ConfigProblem[] };

const API_VERSION = "apiserver.config.k8s.io/v1";
const KIND = "EncryptionConfiguration";
/** apiserver's register.go also accepts this pair "due to a docs bug". */
const LEGACY_API_VERSION = "v1";
const LEGACY_KIND = "EncryptionConfig";
const USE_INSTEAD = `use apiVersion: ${API_VERSION} with kind: ${KIND}`;

/** metav1.Duration default of kms.timeout (v1/defaults.go). */
const DEFAULT_TIMEOUT_NANOS = 3_000_000_000n;
/** Default of kms.cachesize, applied only to apiVersion v1 (v1/defaults.go). */
const DEFAULT_CACHE_SIZE = 1000;
const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;

const TOP_FIELDS = ["apiVersion", "kind", "resources"] as const;
const RESOURCE_FIELDS = ["resources", "providers"] as const;
const PROVIDER_FIELDS = ["aesgcm", "aescbc", "secretbox", "identity", "kms"] as const;
const KEY_LIST_FIELDS = ["keys"] as const;
const KEY_FIELDS = ["name", "secret"] as const;
const KMS_FIELDS = ["apiVersion", "name", "cachesize", "endpoint", "timeout"] as const;

type Mapping = Readonly<Record<string, unknown>>;

export function decodeEncryptionConfiguration(document: unknown): DecodeResult {
  if (!isMapping(document)) {
    return fail(
      "",
      `expected a mapping with apiVersion, kind and resources, got ${describe(document)}`,
    );
  }
  const typeProblem = checkTypeMeta(document);
  if (typeProblem !== undefined) return { ok: false, problems: [typeProblem] };

  const reader = new StrictReader();
  reader.fields(document, "", TOP_FIELDS);
  const resources = reader.list(field(document, "resources"), "resources", (value, path) =>
    decodeResourceConfiguration(reader, value, path),
  );
  return reader.problems.length > 0
    ? { ok: false, problems: reader.problems }
    : { ok: true, config: { resources } };
}

/** The apiserver resolves the type before decoding the body, so a wrong type stops here. */
function checkTypeMeta(document: Mapping): ConfigProblem | undefined {
  const apiVersion = field(document, "apiVersion") ?? "";
  const kind = field(document, "kind") ?? "";
  if (typeof apiVersion !== "string") {
    return { path: "apiVersion", message: `expected a string, got ${describe(apiVersion)}` };
  }
  if (typeof kind !== "string") {
    return { path: "kind", message: `expected a string, got ${describe(kind)}` };
  }
  if (kind === "") return { path: "kind", message: `kind is missing: ${USE_INSTEAD}` };
  if (apiVersion === "")
    return { path: "apiVersion", message: `apiVersion is missing: ${USE_INSTEAD}` };
  if (
    (apiVersion === API_VERSION && kind === KIND) ||
    (apiVersion === LEGACY_API_VERSION && kind === LEGACY_KIND)
  ) {
    return undefined;
  }
  const knownVersion = apiVersion === API_VERSION || apiVersion === LEGACY_API_VERSION;
  return {
    path: knownVersion ? "kind" : "apiVersion",
    message: `kind ${JSON.stringify(kind)} of apiVersion ${JSON.stringify(apiVersion)} is not an EncryptionConfiguration: ${USE_INSTEAD}`,
  };
}

function decodeResourceConfiguration(
  reader: StrictReader,
  value: unknown,
  path: string,
): ResourceConfigurationWire {
  const entry = reader.fields(value, path, RESOURCE_FIELDS);
  return {
    resources: reader.list(field(entry, "resources"), `${path}.resources`, (item, itemPath) =>
      reader.string(item, itemPath),
    ),
    providers: reader.list(field(entry, "providers"), `${path}.providers`, (item, itemPath) =>
      decodeProvider(reader, item, itemPath),
    ),
  };
}

function decodeProvider(reader: StrictReader, value: unknown, path: string): ProviderWire {
  const provider = reader.fields(value, path, PROVIDER_FIELDS);
  const keyList = (name: "aesgcm" | "aescbc" | "secretbox"): KeyListWire | undefined => {
    const body = reader.fields(field(provider, name), `${path}.${name}`, KEY_LIST_FIELDS);
    if (body === undefined) return undefined;
    return {
      keys: reader.list(field(body, "keys"), `${path}.${name}.keys`, (item, itemPath) =>
        decodeKey(reader, item, itemPath),
      ),
    };
  };
  const kms = reader.fields(field(provider, "kms"), `${path}.kms`, KMS_FIELDS);
  return {
    aesgcm: keyList("aesgcm"),
    aescbc: keyList("aescbc"),
    secretbox: keyList("secretbox"),
    identity: reader.fields(field(provider, "identity"), `${path}.identity`, []) !== undefined,
    kms: kms === undefined ? undefined : decodeKms(reader, kms, `${path}.kms`),
  };
}

function decodeKey(reader: StrictReader, value: unknown, path: string): KeyWire {
  const key = reader.fields(value, path, KEY_FIELDS);
  return {
    name: reader.string(field(key, "name"), `${path}.name`),
    secret: reader.string(field(key, "secret"), `${path}.secret`),
  };
}

function decodeKms(reader: StrictReader, kms: Mapping, path: string): KmsWire {
  // Read in the fields' declaration order so problems are listed in that order.
  const apiVersion = reader.string(field(kms, "apiVersion"), `${path}.apiVersion`) || "v1";
  const name = reader.string(field(kms, "name"), `${path}.name`);
  const cachesize = reader.int32(field(kms, "cachesize"), `${path}.cachesize`);
  const endpoint = reader.string(field(kms, "endpoint"), `${path}.endpoint`);
  const timeout = reader.duration(field(kms, "timeout"), `${path}.timeout`);
  return {
    apiVersion,
    name,
    endpoint,
    cachesize: cachesize === undefined && apiVersion === "v1" ? DEFAULT_CACHE_SIZE : cachesize,
    timeoutNanos: timeout ?? DEFAULT_TIMEOUT_NANOS,
  };
}

/** Reads values the way Go's strict JSON decoding fills a struct, recording every problem. */
class StrictReader {
  readonly problems: ConfigProblem[] = [];

  /** A mapping whose keys must all be in `allowed`; undefined when absent or null. */
  fields(value: unknown, path: string, allowed: readonly string[]): Mapping | undefined {
    if (value === undefined || value === null) return undefined;
    if (!isMapping(value)) {
      this.problems.push({ path, message: `expected a mapping, got ${describe(value)}` });
      return undefined;
    }
    for (const key of Object.keys(value)) {
      if (!allowed.includes(key)) {
        this.problems.push({
          path: path === "" ? key : `${path}.${key}`,
          message:
            allowed.length === 0
              ? "unknown field: this mapping takes no fields, write {}"
              : `unknown field: the fields here are ${allowed.join(", ")}`,
        });
      }
    }
    return value;
  }

  list<T>(value: unknown, path: string, item: (value: unknown, path: string) => T): T[] {
    if (value === undefined || value === null) return [];
    if (!Array.isArray(value)) {
      this.problems.push({ path, message: `expected a list, got ${describe(value)}` });
      return [];
    }
    return value.map((element, index) => item(element, `${path}[${index}]`));
  }

  string(value: unknown, path: string): string {
    if (value === undefined || value === null) return "";
    if (typeof value === "string") return value;
    // Never echo the value: this may be a key secret.
    this.problems.push({ path, message: `expected a string, got ${describe(value)}` });
    return "";
  }

  int32(value: unknown, path: string): number | undefined {
    if (value === undefined || value === null) return undefined;
    if (typeof value === "number" && Number.isInteger(value)) {
      if (value >= INT32_MIN && value <= INT32_MAX) return value;
      this.problems.push({ path, message: "out of range for a 32-bit integer" });
      return undefined;
    }
    this.problems.push({ path, message: `expected an integer, got ${describe(value)}` });
    return undefined;
  }

  /** A metav1.Duration: a JSON string in Go's time.ParseDuration syntax (e.g. 3s, 500ms, 1m30s). */
  duration(value: unknown, path: string): bigint | undefined {
    if (value === undefined || value === null) return undefined;
    if (typeof value !== "string") {
      this.problems.push({
        path,
        message: `expected a duration string such as 3s or 500ms, got ${describe(value)}`,
      });
      return undefined;
    }
    const parsed = parseGoDuration(value);
    if (parsed.ok) return parsed.nanoseconds;
    this.problems.push({ path, message: `${parsed.error}: write a duration such as 3s or 500ms` });
    return undefined;
  }
}

function field(mapping: Mapping | undefined, name: string): unknown {
  return mapping !== undefined && Object.hasOwn(mapping, name) ? mapping[name] : undefined;
}

function isMapping(value: unknown): value is Mapping {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function describe(value: unknown): string {
  if (value === null || value === undefined) return "nothing";
  if (Array.isArray(value)) return "a list";
  if (isMapping(value)) return "a mapping";
  if (typeof value === "number" || typeof value === "bigint") return "a number";
  if (typeof value === "boolean") return "a boolean";
  if (typeof value === "string") return "a string";
  return `a ${typeof value === "object" ? (value.constructor?.name ?? "value") : typeof value}`;
}

function fail(path: string, message: string): DecodeResult {
  return { ok: false, problems: [{ path, message }] };
}
