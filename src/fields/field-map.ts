import { z } from "zod";
import { documentIssuesError } from "../config/issues.js";
import { parseYamlText, readConfigText } from "../config/yaml-file.js";
import { NORMALIZERS, type Normalizer } from "../crypto/lookup-token.js";
import { ConfigError } from "../errors.js";
import type { FieldRoute } from "./field-codec.js";

/**
 * How a field's value becomes bytes: `string` as its UTF-8 bytes, `json` as the JSON text of
 * any value (so numbers, objects and booleans come back with their type), `bytes` for binary
 * data (Uint8Array in the library, standard base64 text inside JSON documents).
 */
export type FieldType = "string" | "json" | "bytes";

/** One resource's entry in a field map. */
export interface ResourceFields {
  /** The resource name as the map gives it (and as seal, open and the store take it). */
  readonly resource: string;
  /** Undefined when the entry lists no fields: the resource is stored in the clear on purpose. */
  readonly route: FieldRoute | undefined;
  /** Encrypted fields: dot-separated path to its type, in the order the map lists them. */
  readonly fields: ReadonlyMap<string, FieldType>;
  /** Plaintext fields the store's credential guard inspects (never encrypted). */
  readonly plaintextChecked: readonly string[];
  /**
   * Fields declared with `lookup` (string fields of field-service resources only): path to the
   * normalizers their lookup tokens apply, in order. A field not here cannot be searched.
   */
  readonly lookups: ReadonlyMap<string, readonly Normalizer[]>;
}

/**
 * A validated field map (`apiVersion: kms-envelope/v1`, `kind: FieldMap`): which fields of which
 * resources are encrypted, and how.
 */
export interface FieldMap {
  /** Every listed resource by name, in map order. */
  readonly resources: ReadonlyMap<string, ResourceFields>;
}

const PATH = /^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*$/;

const fieldType = z.enum(["string", "json", "bytes"]);

// zod drops a "__proto__" key from a record without a word, which would leave that field in
// the clear (or, as the only field, declare the resource plain); such a map is refused instead.
const fieldsSchema = z
  .unknown()
  .refine(
    (value) => typeof value !== "object" || value === null || !Object.hasOwn(value, "__proto__"),
    { message: '"__proto__" cannot name an encrypted field: rename the field in the application' },
  )
  .pipe(
    z.record(
      z.string(),
      // The short form `email: string` is read as the long one, `{ type: string, lookup: [trim] }`,
      // so a mistake in either is reported at the key at fault rather than as "invalid input".
      z.preprocess(
        (field) => (typeof field === "string" ? { type: field } : field),
        z.strictObject({ type: fieldType, lookup: z.array(z.enum(NORMALIZERS)).optional() }),
      ),
    ),
  );

const schema = z.strictObject({
  apiVersion: z.literal("kms-envelope/v1"),
  kind: z.literal("FieldMap"),
  resources: z
    .array(
      z.strictObject({
        resource: z.string().min(1),
        route: z.enum(["engine", "field-service"]).optional(),
        fields: fieldsSchema.optional(),
        plaintextChecked: z.array(z.string()).optional(),
      }),
    )
    .min(1),
});

function overlapping(paths: readonly string[]): [string, string] | undefined {
  for (const a of paths) for (const b of paths) if (a !== b && b.startsWith(`${a}.`)) return [a, b];
  return undefined;
}

/**
 * Decodes a field map (YAML or JSON) strictly; problems name the offending path.
 *
 * @param text - The map's YAML or JSON text.
 * @param source - How messages name the map, e.g. its path; default `field map`.
 * @throws `INVALID_CONFIG` for anything unknown or inconsistent: unknown keys, a resource
 * listed twice, fields without a route or a route without fields, a path that is not
 * dot-separated names, a path inside another encrypted path, a plaintextChecked path that is
 * also encrypted, a field named `__proto__`, or a `lookup` that is not a list of known
 * normalizers, is on a field that is not `string`, or is on a resource whose route is not
 * `field-service`.
 */
export function parseFieldMap(text: string, source = "field map"): FieldMap {
  const document = parseYamlText(text, source);
  const result = schema.safeParse(document);
  if (!result.success) throw documentIssuesError(result.error.issues, source, "fix the field map");
  const resources = new Map<string, ResourceFields>();
  for (const [index, entry] of result.data.resources.entries()) {
    const place = `${source} resources.${index}`;
    if (resources.has(entry.resource))
      throw new ConfigError(
        `${place}.resource`,
        `${entry.resource} is listed twice`,
        "merge the entries",
      );
    const declared = Object.entries(entry.fields ?? {}).map(([path, field]) => ({
      path,
      ...field,
    }));
    const paths = declared.map((field) => field.path);
    // An entry without fields is how a resource is declared plain on purpose (the field layer
    // refuses resources the map does not list); a route there would promise encryption.
    if (paths.length > 0 && entry.route === undefined)
      throw new ConfigError(
        `${place}.route`,
        `is missing, and ${entry.resource} has fields to encrypt`,
        `give route: engine or route: field-service for the fields of ${entry.resource}`,
      );
    if (paths.length === 0 && entry.route !== undefined)
      throw new ConfigError(
        `${place}.fields`,
        "lists no field, yet a route is given",
        `list at least one field to encrypt, or drop route to store ${entry.resource} in the clear on purpose`,
      );
    const badPath = [...paths, ...(entry.plaintextChecked ?? [])].find((path) => !PATH.test(path));
    if (badPath !== undefined)
      throw new ConfigError(
        place,
        `${JSON.stringify(badPath)} is not a field name or a dot-separated path of names`,
        "write names of letters, digits, _ and -, starting with a letter or _, joined by dots",
      );
    const clash = overlapping(paths);
    if (clash !== undefined)
      throw new ConfigError(
        `${place}.fields`,
        `${clash[1]} is inside ${clash[0]}, which is already encrypted whole`,
        "list one of them",
      );
    const plaintextChecked = entry.plaintextChecked ?? [];
    const both = plaintextChecked.find((path) => paths.includes(path));
    if (both !== undefined)
      throw new ConfigError(
        `${place}.plaintextChecked`,
        `${both} is also an encrypted field`,
        "drop it from plaintextChecked: an encrypted field is never stored in the clear",
      );
    const lookups = new Map<string, readonly Normalizer[]>();
    for (const { path, type, lookup } of declared) {
      if (lookup === undefined) continue;
      const setting = `${place}.fields.${path}.lookup`;
      // Tokens are HMACs under the values' order of bytes; only text has a normal form to apply
      // normalizers to, and a JSON or bytes value's equality is rarely what an application means.
      if (type !== "string")
        throw new ConfigError(
          setting,
          `is given for a ${type} field; only string fields can have lookup tokens`,
          `drop lookup from ${path}, or store the value to search for as a string field of its own`,
        );
      // Tokens are keyed by the daemon's workspace keys (SPEC.md §2.1); the engine route runs
      // in process on an EncryptionConfiguration, which has no workspaces and no key to key them by.
      if (entry.route !== "field-service")
        throw new ConfigError(
          setting,
          `is given on ${entry.resource}, whose route is ${entry.route}; lookup tokens are computed by the daemon under workspace keys, which the engine route does not use`,
          `give ${entry.resource} route: field-service to search ${path}, or drop lookup`,
        );
      lookups.set(path, lookup);
    }
    resources.set(entry.resource, {
      resource: entry.resource,
      route: entry.route,
      fields: new Map(declared.map(({ path, type }) => [path, type])),
      plaintextChecked,
      lookups,
    });
  }
  return { resources };
}

/**
 * Reads and decodes a field map file, as {@link parseFieldMap} does for text.
 *
 * @param path - The file (YAML or JSON, UTF-8).
 * @throws `INVALID_CONFIG` when the file cannot be read or is not a valid field map.
 */
export async function loadFieldMap(path: string): Promise<FieldMap> {
  return parseFieldMap(await readConfigText(path, "field map"), `field map ${path}`);
}
