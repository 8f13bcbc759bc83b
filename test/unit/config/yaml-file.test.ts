import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { MAX_YAML_DEPTH, parseYamlText, yamlNestingDepth } from "../../../src/config/yaml-file.js";
import { KmsEnvelopeError } from "../../../src/errors.js";
import { PACKAGE_ROOT } from "../../../src/package-info.js";

const flow = (depth: number) => `${"[".repeat(depth)}${"]".repeat(depth)}`;
const block = (depth: number) =>
  `${Array.from({ length: depth }, (_, i) => `${" ".repeat(i * 2)}-`).join("\n")} x`;

describe("YAML configuration text", () => {
  it("measures nesting in flow and block style without composing the document", () => {
    assert.equal(yamlNestingDepth("a: 1"), 1);
    assert.equal(yamlNestingDepth("{a: {b: [1]}}"), 3);
    assert.equal(yamlNestingDepth(flow(5)), 4);
    assert.equal(yamlNestingDepth(block(5)), 5);
    assert.equal(yamlNestingDepth(flow(200_000)), 199_999);
  });

  it("the shipped configuration files are far from the nesting limit", async () => {
    for (const name of [
      "field-map-obot.yaml",
      "field-map-atelyaos.yaml",
      "kms-envelope-static-pod.yaml",
    ]) {
      const text = await readFile(join(PACKAGE_ROOT, "config", name), "utf8");
      assert.ok(yamlNestingDepth(text) < 16, name);
    }
  });

  it("refuses deeper documents with INVALID_CONFIG, every time they are read", () => {
    // Before the limit, reading a thousand-level document a second time aborted Node (a
    // fatal RegExpCompiler out-of-memory after yaml's composer overflowed the stack), which
    // took down a daemon polling its keyring file.
    let innermost = parseYamlText(block(MAX_YAML_DEPTH), "keyring k");
    for (let level = 1; level < MAX_YAML_DEPTH; level++) innermost = (innermost as unknown[])[0];
    assert.deepEqual(innermost, ["x"], "the deepest document allowed is read");
    for (const text of [
      block(MAX_YAML_DEPTH + 1),
      flow(1000),
      flow(1000),
      block(1000),
      block(1000),
    ]) {
      assert.throws(
        () => parseYamlText(text, "keyring k"),
        (error) =>
          error instanceof KmsEnvelopeError &&
          error.code === "INVALID_CONFIG" &&
          /keyring k: nests collections more than 64 levels deep/.test(error.message),
      );
    }
  });
});
