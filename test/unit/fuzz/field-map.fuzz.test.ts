import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import fc from "fast-check";
import { stringify } from "yaml";
import { parseFieldMap } from "../../../src/fields/field-map.js";
import { PACKAGE_ROOT } from "../../../src/package-info.js";
import {
  outcome,
  PROTOTYPE_NAMES,
  readDeeplyNestedTwice,
  runs,
  textMutationOf,
} from "./fuzz-support.js";

const SAMPLES = ["field-map-obot.yaml", "field-map-atelyaos.yaml"].map((name) =>
  readFileSync(join(PACKAGE_ROOT, "config", name), "utf8"),
);

const segment = fc.oneof(
  { arbitrary: fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_-]{0,6}$/), weight: 2 },
  { arbitrary: fc.constantFrom(...PROTOTYPE_NAMES), weight: 1 },
);
const fieldPath = fc.oneof(
  fc.array(segment, { minLength: 1, maxLength: 3 }).map((steps) => steps.join(".")),
  fc.constantFrom("", ".", "a..b", "1a", "a b", "é"),
  fc.string({ maxLength: 8 }),
);

/** Field-map documents: mostly well-formed entries, with names, paths and types that are not. */
const documents = fc.record({
  apiVersion: fc.oneof(
    { arbitrary: fc.constant("kms-envelope/v1"), weight: 8 },
    fc.jsonValue({ maxDepth: 1 }),
  ),
  kind: fc.oneof({ arbitrary: fc.constant("FieldMap"), weight: 8 }, fc.jsonValue({ maxDepth: 1 })),
  resources: fc.oneof(
    {
      arbitrary: fc.array(
        fc.record(
          {
            resource: fc.oneof(
              fc.constantFrom("users.obot.obot.ai", "messages", "credentials", ...PROTOTYPE_NAMES),
              fc.string({ maxLength: 10 }),
            ),
            route: fc.oneof(
              { arbitrary: fc.constantFrom("engine", "field-service"), weight: 6 },
              fc.jsonValue({ maxDepth: 1 }),
            ),
            fields: fc.oneof(
              {
                arbitrary: fc.dictionary(
                  fieldPath,
                  fc.oneof(
                    { arbitrary: fc.constantFrom("string", "json", "bytes"), weight: 6 },
                    fc.jsonValue({ maxDepth: 1 }),
                  ),
                  { maxKeys: 4 },
                ),
                weight: 6,
              },
              fc.jsonValue({ maxDepth: 2 }),
            ),
            plaintextChecked: fc.oneof(
              fc.array(fieldPath, { maxLength: 3 }),
              fc.jsonValue({ maxDepth: 1 }),
            ),
          },
          { requiredKeys: ["resource"] },
        ),
        { maxLength: 4 },
      ),
      weight: 8,
    },
    fc.jsonValue({ maxDepth: 2 }),
  ),
});

// Entries that are valid but for the names of their fields, so most documents are accepted.
const namedFieldsDocuments = fc.record({
  apiVersion: fc.constant("kms-envelope/v1"),
  kind: fc.constant("FieldMap"),
  resources: fc.uniqueArray(
    fc.record({
      resource: fc.constantFrom("users.obot.obot.ai", "messages", "credentials", "notes"),
      route: fc.constantFrom("engine", "field-service"),
      fields: fc.dictionary(
        fc.array(segment, { minLength: 1, maxLength: 2 }).map((steps) => steps.join(".")),
        fc.constantFrom("string", "json", "bytes"),
        { minKeys: 1, maxKeys: 4 },
      ),
    }),
    { minLength: 1, maxLength: 3, selector: (entry) => entry.resource },
  ),
});

/** Parses, insisting that a refusal is INVALID_CONFIG and that accepted maps are consistent. */
function parse(text: string): void {
  const result = outcome(() => parseFieldMap(text), ["INVALID_CONFIG"]);
  if (!result.ok) return;
  for (const entry of result.value.resources.values()) {
    assert.equal(entry.route === undefined, entry.fields.size === 0);
    for (const type of entry.fields.values()) assert.ok(["string", "json", "bytes"].includes(type));
  }
}

describe("fuzz: field maps (YAML and JSON)", () => {
  it("arbitrary text never escapes parseFieldMap as anything but an INVALID_CONFIG KmsEnvelopeError", () => {
    fc.assert(fc.property(fc.string({ unit: "binary", maxLength: 200 }), parse), runs(500));
  });

  it("any JSON value and near-valid field-map documents yield a field map or INVALID_CONFIG", () => {
    fc.assert(
      fc.property(fc.oneof(fc.jsonValue(), documents), (document) =>
        parse(JSON.stringify(document) ?? ""),
      ),
      runs(500),
    );
  });

  it("documents nested up to 2,000 levels deep, each read twice, yield INVALID_CONFIG, never a crash", () => {
    readDeeplyNestedTwice(parse);
  });

  it("mutations of the shipped field maps yield a field map or INVALID_CONFIG", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...SAMPLES).chain((sample) => textMutationOf(sample)),
        parse,
      ),
      runs(300),
    );
  });

  it("every encrypted field a document lists is in the parsed map, or the map is refused", () => {
    fc.assert(
      fc.property(fc.oneof(namedFieldsDocuments, documents), (document) => {
        const result = outcome(() => parseFieldMap(stringify(document)), ["INVALID_CONFIG"]);
        if (!result.ok) return;
        for (const entry of document.resources as { resource: string; fields?: object }[]) {
          const parsed = result.value.resources.get(entry.resource);
          assert.deepEqual(
            [...(parsed?.fields.keys() ?? [])].sort(),
            Object.keys(entry.fields ?? {}).sort(),
            `fields of ${entry.resource}`,
          );
        }
      }),
      runs(500),
    );
  });
});
