import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { stringify } from "yaml";
import { parseYamlText } from "../../../src/config/yaml-file.js";
import { type Keyring, validateKeyring } from "../../../src/keys/keyring-file.js";
import {
  outcome,
  PROTOTYPE_NAMES,
  readDeeplyNestedTwice,
  runs,
  textMutationOf,
} from "./fuzz-support.js";

const VALID: Keyring = {
  apiVersion: "kms-envelope.io/v1",
  kind: "Keyring",
  versions: [
    {
      keyId: "aws:AAAAAAAAAAAAAAAA",
      provider: "aws",
      keyRef: "arn:aws:kms:eu-west-1:111122223333:key/k",
      wrappedKey: Buffer.alloc(48, 7).toString("base64"),
      created: "2026-11-22T10:00:00.000Z",
      state: "primary",
    },
    {
      keyId: "aws:BBBBBBBBBBBBBBBB",
      provider: "aws",
      keyRef: "arn:aws:kms:eu-west-1:111122223333:key/k",
      wrappedKey: Buffer.alloc(48, 8).toString("base64"),
      created: "2026-11-21T10:00:00+02:00",
      state: "retired",
    },
  ],
};
const VALID_TEXT = stringify(VALID);

/** What the daemon does with a keyring file's text: YAML first, then the schema. */
function read(text: string): void {
  const result = outcome(
    () => validateKeyring(parseYamlText(text, "keyring k"), "k"),
    ["INVALID_CONFIG"],
  );
  if (!result.ok) return;
  const keyring = result.value;
  assert.equal(keyring.versions.filter((version) => version.state === "primary").length, 1);
  assert.equal(
    new Set(keyring.versions.map((version) => version.keyId)).size,
    keyring.versions.length,
  );
}

const oddValue = fc.oneof(
  fc.jsonValue({ maxDepth: 1 }),
  fc.constantFrom(
    "",
    "primary",
    "active",
    "retired",
    "AWS",
    "not base64",
    "2026-13-40T99:00:00Z",
    ...PROTOTYPE_NAMES,
  ),
);
const versionField = fc.constantFrom(
  "keyId",
  "provider",
  "keyRef",
  "wrappedKey",
  "created",
  "state",
  ...PROTOTYPE_NAMES,
);

// The valid keyring with one field of one version replaced, removed, or a field added.
const nearValid = fc
  .tuple(fc.nat(VALID.versions.length - 1), versionField, fc.option(oddValue, { nil: undefined }))
  .map(([index, field, value]) => {
    const versions = VALID.versions.map((version, i) => {
      if (i !== index) return version;
      const entries = Object.entries(version).filter(([name]) => name !== field);
      return Object.fromEntries(value === undefined ? entries : [...entries, [field, value]]);
    });
    return JSON.stringify({ ...VALID, versions });
  });

describe("fuzz: keyring files", () => {
  it("arbitrary text never escapes keyring decoding as anything but an INVALID_CONFIG KmsEnvelopeError", () => {
    fc.assert(fc.property(fc.string({ unit: "binary", maxLength: 200 }), read), runs(400));
  });

  it("any JSON value, and the valid keyring with one field changed, yield a keyring or INVALID_CONFIG", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.jsonValue().map((value) => JSON.stringify(value) ?? ""),
          nearValid,
        ),
        read,
      ),
      runs(400),
    );
  });

  it("documents nested up to 2,000 levels deep, each read twice (a reload), yield INVALID_CONFIG, never a crash", () => {
    readDeeplyNestedTwice(read);
  });

  it("mutations of a valid keyring file yield a keyring or INVALID_CONFIG", () => {
    fc.assert(fc.property(textMutationOf(VALID_TEXT), read), runs(300));
  });
});
