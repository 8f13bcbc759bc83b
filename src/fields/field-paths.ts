import type { JsonObject, JsonValue } from "./field-codec.js";

function isObject(value: JsonValue | undefined): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The value at a dot-separated path, or undefined when any step is missing. */
export function getPath(document: JsonObject, path: string): JsonValue | undefined {
  // Most listed fields are top-level; this runs for every field of every record.
  if (!path.includes(".")) return Object.hasOwn(document, path) ? document[path] : undefined;
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

/**
 * A copy of `document` without the value at `path` (the objects on the way are copied, never
 * changed); the document itself when nothing is there.
 */
export function withoutPath(document: JsonObject, path: string): JsonObject {
  const [step, ...rest] = path.split(".") as [string, ...string[]];
  if (!Object.hasOwn(document, step)) return document;
  if (rest.length === 0) {
    const { [step]: _removed, ...others } = document;
    return others;
  }
  const child = document[step];
  if (!isObject(child)) return document;
  return { ...document, [step]: withoutPath(child, rest.join(".")) };
}

/**
 * A copy of `document` with the value at each path replaced, for many fields at once: the root
 * and each object on the paths are copied once, not once per field. The caller's document is
 * never changed; every path must already exist.
 */
export function withPaths(
  document: JsonObject,
  entries: Iterable<readonly [path: string, value: JsonValue]>,
): JsonObject {
  const root: JsonObject = { ...document };
  const copies = new Set<JsonObject>([root]);
  for (const [path, value] of entries) {
    if (!path.includes(".")) {
      setOwn(root, path, value);
      continue;
    }
    const steps = path.split(".");
    const last = steps.pop() as string;
    let parent = root;
    for (const step of steps) {
      const child = parent[step];
      if (!isObject(child)) throw new RangeError(`no object at ${step}`);
      if (copies.has(child)) {
        parent = child;
        continue;
      }
      const copy = { ...child };
      copies.add(copy);
      setOwn(parent, step, copy);
      parent = copy;
    }
    setOwn(parent, last, value);
  }
  return root;
}

// An own property even for "__proto__", which plain assignment would take as the prototype;
// any other key is assigned, which is several times cheaper than defining it.
function setOwn(object: JsonObject, key: string, value: JsonValue): void {
  if (key !== "__proto__") object[key] = value;
  else
    Object.defineProperty(object, key, {
      value,
      writable: true,
      enumerable: true,
      configurable: true,
    });
}
