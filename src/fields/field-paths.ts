import type { JsonObject, JsonValue } from "./field-codec.js";

function isObject(value: JsonValue | undefined): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The value at a dot-separated path, or undefined when any step is missing. */
export function getPath(document: JsonObject, path: string): JsonValue | undefined {
  let current: JsonValue | undefined = document;
  for (const step of path.split(".")) {
    if (!isObject(current) || !Object.hasOwn(current, step)) return undefined;
    current = current[step];
  }
  return current;
}

/**
 * A copy of `document` with the value at `path` replaced; only the objects on the path are
 * copied, so the caller's document is never changed. The path must already exist.
 */
export function withPath(document: JsonObject, path: string, value: JsonValue): JsonObject {
  const [step, ...rest] = path.split(".") as [string, ...string[]];
  if (rest.length === 0) return { ...document, [step]: value };
  const child = document[step];
  if (!isObject(child)) throw new RangeError(`no object at ${step}`);
  return { ...document, [step]: withPath(child, rest.join("."), value) };
}
