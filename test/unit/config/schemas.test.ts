import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { z } from "zod";
import { base64Schema, keyIdSchema, providerNameSchema } from "../../../src/config/schemas.js";

function accepts(schema: z.ZodType, values: readonly string[]): void {
  for (const value of values) assert.equal(schema.safeParse(value).success, true, value);
}

function refuses(schema: z.ZodType, values: readonly string[]): void {
  for (const value of values) assert.equal(schema.safeParse(value).success, false, value);
}

describe("providerNameSchema", () => {
  test("a lowercase letter, then at most 31 lowercase letters, digits or -", () => {
    accepts(providerNameSchema, ["aws", "local", "a", "vault-2", `a${"b".repeat(31)}`]);
  });

  test("capitals, a leading digit or -, other characters and a 33rd character are refused", () => {
    refuses(providerNameSchema, [
      "",
      "AWS",
      "1aws",
      "-aws",
      "my_vault",
      "a b",
      `a${"b".repeat(32)}`,
    ]);
  });
});

describe("keyIdSchema", () => {
  test("1 to 1024 bytes of UTF-8, as kube-apiserver counts a KMS v2 keyID", () => {
    accepts(keyIdSchema, ["local:abc", "k".repeat(1024), "é".repeat(512)]);
    refuses(keyIdSchema, ["", "k".repeat(1025), "é".repeat(513)]);
  });
});

describe("base64Schema", () => {
  test("standard padded base64, never empty", () => {
    accepts(base64Schema, ["AAAA", "AA==", "AAA=", "q83v+/8="]);
    refuses(base64Schema, ["", "AAA", "A===", "AA=A", "AA-_", "AA AA==", "AAAA\n"]);
  });
});
