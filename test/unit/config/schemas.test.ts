import assert from "node:assert/strict";
import { resolve } from "node:path";
import { describe, test } from "node:test";
import type { z } from "zod";
import { parseFlag } from "../../../src/config/issues.js";
import {
  base64Schema,
  keyIdSchema,
  providerNameSchema,
  socketPathSchema,
} from "../../../src/config/schemas.js";
import { hasCode } from "../../support/error-assertions.js";

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

describe("socketPathSchema", () => {
  const socket = (value: string) => parseFlag(socketPathSchema, "socket", value);
  const refused = (detail: RegExp) =>
    hasCode("INVALID_CONFIG", new RegExp(`^--socket: ${detail.source}`));

  test("a path, absolute or relative to the working directory, or unix:///path, trimmed", () => {
    assert.equal(socket("/var/run/kmsplugin/kms.sock"), "/var/run/kmsplugin/kms.sock");
    assert.equal(socket("run/kms.sock"), resolve(process.cwd(), "run/kms.sock"));
    assert.equal(socket("./kms.sock"), resolve(process.cwd(), "kms.sock"));
    assert.equal(socket("unix:///var/run/kmsplugin/kms.sock"), "/var/run/kmsplugin/kms.sock");
    assert.equal(socket("  /tmp/kms.sock\n"), "/tmp/kms.sock");
  });

  test("abstract sockets (@name and unix:///@name) are refused: they have no file to protect", () => {
    for (const value of ["@kms", "unix:///@kms", "unix://@kms", "@"]) {
      assert.throws(
        () => socket(value),
        refused(/abstract sockets such as "[^"]+" are not supported \(give a socket file path\)$/),
        value,
      );
    }
  });

  test("schemes other than unix://, an empty value and unix:// without a path are refused", () => {
    for (const value of ["http://localhost:8080", "tcp://127.0.0.1:9000", "unix+tls:///x"]) {
      assert.throws(() => socket(value), refused(/only unix:\/\/ endpoints are supported/), value);
    }
    for (const value of ["", "   "]) {
      assert.throws(() => socket(value), refused(/is empty \(give a path such as /));
    }
    assert.throws(
      () => socket("unix://"),
      refused(/"unix:\/\/" has no path \(write unix:\/\/\/path\/to\/socket\)$/),
    );
  });

  test("at most 107 bytes, the Linux sun_path limit, for the daemon and its clients alike", () => {
    const longest = `/tmp/${"s".repeat(97)}.sock`;
    assert.equal(socket(longest), longest);
    assert.throws(
      () => socket(`/tmp/${"s".repeat(98)}.sock`),
      refused(
        /\/tmp\/s+\.sock is 108 bytes long; Unix socket paths are limited to 107 bytes \(choose a shorter path or --run-dir\)$/,
      ),
    );
  });
});
