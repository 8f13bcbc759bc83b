import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { fieldLayerFromFlags } from "../../../src/cli/field-layer-flags.js";
import { hasCode } from "../../support/error-assertions.js";

describe("fieldLayerFromFlags", () => {
  test("a daemon socket path over 107 bytes is refused before anything is opened, as serve does", () => {
    assert.throws(
      () =>
        fieldLayerFromFlags({
          fields: "/nonexistent/field-map.yaml",
          socket: `/tmp/${"s".repeat(98)}.sock`,
          timeout: "5s",
        }),
      hasCode("INVALID_CONFIG", /^--socket: \S+ is 108 bytes long; Unix socket paths are limited/),
    );
  });
});
