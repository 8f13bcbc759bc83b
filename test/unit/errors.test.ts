import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ConfigError, KmsEnvelopeError } from "../../src/errors.js";

describe("ConfigError", () => {
  test("is INVALID_CONFIG and names the setting, the problem and the remedy in one line", () => {
    const error = new ConfigError("--socket", "is empty", "give a path such as /run/kms.sock");
    assert.ok(error instanceof KmsEnvelopeError);
    assert.equal(error.code, "INVALID_CONFIG");
    assert.equal(error.name, "ConfigError");
    assert.equal(error.setting, "--socket");
    assert.equal(error.message, "--socket: is empty (give a path such as /run/kms.sock)");
  });

  test("keeps the cause", () => {
    const cause = new Error("ENOENT");
    assert.equal(
      new ConfigError("--keyring", "cannot be read", "check it", { cause }).cause,
      cause,
    );
  });
});
