/**
 * `kms-envelope store find` as an operator runs it: the real CLI against a real daemon (which
 * computes the lookup tokens) and a real SQLite store.
 */
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { runCli, suiteDaemon, temporaryDirectory } from "../support/daemon-process.js";

const FIELD_MAP = `apiVersion: kms-envelope/v1
kind: FieldMap
resources:
  - resource: users
    route: field-service
    fields:
      email: { type: string, lookup: [trim, lowercase] }
      name: string
`;

const USERS = [
  { id: "u1", ws: "acme", email: "Ada@Example.com", name: "Ada" },
  { id: "u2", ws: "acme", email: "bob@example.com", name: "Bob" },
  { id: "u3", ws: "other", email: "ada@example.com", name: "Ada elsewhere" },
];

describe("kms-envelope store find", () => {
  const suite = suiteDaemon();
  let directory: Awaited<ReturnType<typeof temporaryDirectory>>;
  let flags: string[];
  const find = (...extra: string[]) =>
    runCli(["store", "find", ...flags, ...extra], { KMS_ENVELOPE_SOCKET: suite.daemon.socketPath });

  before(async () => {
    directory = await temporaryDirectory();
    const fieldMap = join(directory.path, "field-map.yaml");
    await writeFile(fieldMap, FIELD_MAP);
    flags = [
      "--resource",
      "users",
      "--fields",
      fieldMap,
      "--store",
      `sqlite://${join(directory.path, "store.db")}`,
    ];
    const put = await runCli(
      ["store", "put", ...flags, "--workspace-field", "ws"],
      { KMS_ENVELOPE_SOCKET: suite.daemon.socketPath },
      60_000,
      USERS.map((user) => JSON.stringify(user)).join("\n"),
    );
    assert.equal(put.code, 0, put.stderr);
  });
  after(() => directory.remove());

  test("finds the workspace's record whose field equals the value after trim and lowercase, decrypted", async () => {
    const found = await find("--where", "email=  ADA@example.COM ", "--workspace", "acme");
    assert.equal(found.code, 0, found.stderr);
    assert.deepEqual(
      found.stdout
        .trimEnd()
        .split("\n")
        .map((line) => JSON.parse(line)),
      [USERS[0]],
    );
  });

  test("a value more records share than one page holds is printed whole, each record once, in id order", async () => {
    const many = Array.from({ length: 1_203 }, (_, index) => ({
      id: `m-${String(index).padStart(4, "0")}`,
      ws: "many",
      email: "Team@Example.com",
      name: `Member ${index}`,
    }));
    const put = await runCli(
      ["store", "put", ...flags, "--workspace-field", "ws"],
      { KMS_ENVELOPE_SOCKET: suite.daemon.socketPath },
      120_000,
      many.map((user) => JSON.stringify(user)).join("\n"),
    );
    assert.equal(put.code, 0, put.stderr);
    const found = await find("--where", "email=team@example.com", "--workspace", "many");
    assert.equal(found.code, 0, found.stderr);
    const names = found.stdout
      .trim()
      .split("\n")
      .map((line) => (JSON.parse(line) as { name: string }).name);
    assert.deepEqual(
      names,
      many.map((user) => user.name),
    );
  });

  test("another workspace's equal value never matches; nothing found is said on stderr without the value", async () => {
    const found = await find("--where", "email=bob@example.com", "--workspace", "other");
    assert.equal(found.code, 0, found.stderr);
    assert.equal(found.stdout, "");
    assert.match(found.stderr, /no record of users in workspace "other" has that email/);
    assert.ok(!found.stderr.includes("bob@"), "the value searched for is not echoed");
  });

  test("a field without a lookup and a --where without = are usage errors (exit 2), naming the flag", async () => {
    const noLookup = await find("--where", "name=Ada", "--workspace", "acme");
    assert.equal(noLookup.code, 2, "an invocation the field map cannot answer");
    assert.match(noLookup.stderr, /^kms-envelope: --where: users name has no lookup.*search email/);
    assert.equal(noLookup.stderr.trimEnd().split("\n").length, 1, noLookup.stderr);
    assert.ok(!noLookup.stderr.includes("Ada"), "the value searched for is not echoed");
    const malformed = await find("--where", "ada@example.com", "--workspace", "acme");
    assert.equal(malformed.code, 2);
    assert.match(malformed.stderr, /--where: is not FIELD=VALUE/);
    assert.ok(!malformed.stderr.includes("ada@"), "the value searched for is not echoed");
  });
});
