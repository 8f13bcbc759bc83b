import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import type { JsonObject, JsonValue } from "../../../src/fields/field-codec.js";
import { getPath, withPath, withPaths } from "../../../src/fields/field-paths.js";
import { PROTOTYPE_NAMES, runs } from "./fuzz-support.js";

const name = fc.oneof(
  fc.constantFrom("a", "b", "email", "", ...PROTOTYPE_NAMES),
  fc.string({ maxLength: 4 }),
);

// Records as applications store them: JSON text parsed back, so "__proto__" is an own key.
const documents: fc.Arbitrary<JsonObject> = fc
  .letrec<{ value: JsonValue; object: JsonObject }>((tie) => ({
    value: fc.oneof(
      { depthSize: "small", withCrossShrink: true },
      fc.oneof(fc.string({ maxLength: 6 }), fc.integer(), fc.boolean(), fc.constant(null)),
      fc.array(tie("value"), { maxLength: 3 }),
      tie("object"),
    ),
    object: fc.dictionary(name, tie("value"), { maxKeys: 4 }),
  }))
  .object.map((document) => JSON.parse(JSON.stringify(document)) as JsonObject);

/** Every path of nested object keys in `document`, dot-joined (keys with a dot are skipped). */
function pathsOf(document: JsonObject, prefix = ""): string[] {
  return Object.entries(document).flatMap(([key, value]) => {
    if (key.includes(".") || key === "") return [];
    const path = prefix === "" ? key : `${prefix}.${key}`;
    const nested =
      typeof value === "object" && value !== null && !Array.isArray(value)
        ? pathsOf(value, path)
        : [];
    return [path, ...nested];
  });
}

const documentAndPath = documents
  .filter((document) => pathsOf(document).length > 0)
  .chain((document) => fc.constantFrom(...pathsOf(document)).map((path) => ({ document, path })));

describe("fuzz: field paths in JSON records", () => {
  it("getPath never throws and sees only a record's own fields, whatever the path", () => {
    fc.assert(
      fc.property(
        documents,
        fc.oneof(
          fc.array(name, { minLength: 1, maxLength: 3 }).map((steps) => steps.join(".")),
          fc.string({ maxLength: 12 }),
        ),
        (document, path) => {
          const value = getPath(document, path);
          if (value === undefined) return;
          let current: unknown = document;
          for (const step of path.split(".")) {
            assert.ok(Object.hasOwn(current as object, step), `${step} is not an own field`);
            current = (current as Record<string, unknown>)[step];
          }
          assert.equal(value, current);
        },
      ),
      runs(1500),
    );
  });

  it("withPaths is withPath applied field by field, and leaves the input untouched", () => {
    fc.assert(
      fc.property(
        documents
          .filter((document) => pathsOf(document).length > 0)
          .chain((document) =>
            fc
              .subarray(pathsOf(document), { minLength: 1 })
              // Field maps never list a path inside another, so neither do these.
              .map((paths) =>
                paths.filter((path) => !paths.some((other) => path.startsWith(`${other}.`))),
              )
              .chain((paths) =>
                fc
                  .array(fc.jsonValue({ maxDepth: 2 }), {
                    minLength: paths.length,
                    maxLength: paths.length,
                  })
                  .map((values) => ({ document, paths, values: values as JsonValue[] })),
              ),
          ),
        ({ document, paths, values }) => {
          const before = JSON.stringify(document);
          const entries = paths.map((path, index) => [path, values[index] ?? null] as const);
          const together = withPaths(document, entries);
          const oneByOne = entries.reduce(
            (current, [path, value]) => withPath(current, path, value),
            document,
          );
          assert.equal(JSON.stringify(document), before, "the input was changed");
          assert.deepEqual(together, oneByOne);
          assert.equal(Object.getPrototypeOf(together), Object.prototype);
        },
      ),
      runs(1500),
    );
  });

  it("withPath replaces exactly the value at an existing path and leaves the input untouched", () => {
    fc.assert(
      fc.property(documentAndPath, fc.jsonValue({ maxDepth: 2 }), ({ document, path }, value) => {
        const before = JSON.stringify(document);
        const replaced = withPath(document, path, value as JsonValue);
        assert.equal(JSON.stringify(document), before, "the input was changed");
        assert.deepEqual(getPath(replaced, path), value);
        const survives = JSON.parse(JSON.stringify(replaced)) as JsonObject;
        assert.deepEqual(getPath(survives, path), JSON.parse(JSON.stringify(value ?? null)));
        for (const other of pathsOf(document)) {
          if (other === path || other.startsWith(`${path}.`) || path.startsWith(`${other}.`))
            continue;
          assert.deepEqual(getPath(replaced, other), getPath(document, other), other);
        }
      }),
      runs(1000),
    );
  });
});
