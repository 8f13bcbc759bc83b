import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { z } from "zod";
import { durationSchema } from "../../../src/config/duration.js";
import { documentIssuesError, flagIssuesError, parseFlag } from "../../../src/config/issues.js";
import { ConfigError } from "../../../src/errors.js";

const flags = z.object({
  socketMode: z.string().regex(/^0?[0-7]{3}$/, "must be octal"),
  workers: z.number(),
});
const keyring = z.strictObject({
  versions: z.array(z.object({ keyId: z.string().min(1, "must not be empty") })),
});

function issuesOf(schema: z.ZodType, value: unknown) {
  const parsed = schema.safeParse(value);
  assert.equal(parsed.success, false);
  return parsed.error?.issues ?? [];
}

describe("schema issues as one ConfigError", () => {
  test("flags: the setting is the first flag at fault, the others follow with theirs", () => {
    const error = flagIssuesError(issuesOf(flags, { socketMode: "x", workers: "two" }));
    assert.ok(error instanceof ConfigError);
    assert.equal(error.setting, "--socket-mode");
    assert.match(
      error.message,
      /^--socket-mode: must be octal; --workers: .+ \(run with --help for what each flag accepts\)$/,
    );
  });

  test("documents: the setting is the document and the path, or the document alone for the whole", () => {
    const inside = documentIssuesError(
      issuesOf(keyring, { versions: [{ keyId: "" }] }),
      "keyring k.yaml",
      "fix the keyring file",
    );
    assert.equal(inside.setting, "keyring k.yaml versions.0.keyId");
    assert.equal(
      inside.message,
      "keyring k.yaml versions.0.keyId: must not be empty (fix the keyring file)",
    );
    const whole = documentIssuesError(issuesOf(keyring, "text"), "keyring k.yaml", "fix it");
    assert.equal(whole.setting, "keyring k.yaml");
  });

  test("parseFlag names the flag it was given", () => {
    assert.equal(parseFlag(durationSchema, "timeout", "2s"), 2000);
    assert.throws(() => parseFlag(durationSchema, "timeout", "soon"), {
      code: "INVALID_CONFIG",
      setting: "--timeout",
      message: /^--timeout: must be a duration such as 500ms/,
    });
  });
});
