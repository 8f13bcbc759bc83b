import { z } from "zod";
import { documentIssuesError } from "../config/issues.js";
import { parseYamlText, readConfigText } from "../config/yaml-file.js";
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

// zod drops a "__proto__" key from a record without a word, which would leave that field in
// the clear (or, as the only field, declare the resource plain); such a map is refused instead.
const fieldsSchema = z
  .unknown()
  .refine(
    (value) => typeof value !== "object" || value === null || !Object.hasOwn(value, "__proto__"),
    { message: '"__proto__" cannot name an encrypted field: rename the field in the application' },
  )
  .pipe(z.record(z.string(), z.enum(["string", "json", "bytes"])));

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
 * also encrypted, or a field named `__proto__`.
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
    const paths = Object.keys(entry.fields ?? {});
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
    resources.set(entry.resource, {
      resource: entry.resource,
      route: entry.route,
      fields: new Map(Object.entries(entry.fields ?? {})),
      plaintextChecked,
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
  return parseFieldMap(await readConfigText(path, "field map"), path);
}
