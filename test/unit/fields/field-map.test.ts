import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import { bytesToValue, valueToBytes } from "../../../src/fields/field-encoding.js";
import { loadFieldMap, parseFieldMap } from "../../../src/fields/field-map.js";
import { getPath, withPath } from "../../../src/fields/field-paths.js";
import { PACKAGE_ROOT } from "../../../src/package-info.js";

const header = "apiVersion: kms-envelope/v1\nkind: FieldMap\n";

describe("field maps", () => {
  it("the shipped maps load and list the resources the seed platforms encrypt", async () => {
    const obot = await loadFieldMap(join(PACKAGE_ROOT, "config/field-map-obot.yaml"));
    assert.deepEqual([...obot.resources.keys()].sort(), [
      "credentials",
      "identities.obot.obot.ai",
      "mcpauditlogs.obot.obot.ai",
      "mcpoauthtokens.obot.obot.ai",
      "runstates.obot.obot.ai",
      "sessioncookies.obot.obot.ai",
      "users.obot.obot.ai",
    ]);
    assert.equal(obot.resources.get("runstates.obot.obot.ai")?.fields.get("chatState"), "bytes");
    const atelyaos = await loadFieldMap(join(PACKAGE_ROOT, "config/field-map-atelyaos.yaml"));
    for (const resource of [
      "messages",
      "integrations",
      "webhook_bridges",
      "mcp_servers",
      "whatsapp_accounts",
      "a2a_inbox",
    ])
      assert.equal(atelyaos.resources.get(resource)?.route, "field-service", resource);
  });

  const invalid: [string, string, RegExp][] = [
    [
      "unknown key",
      `${header}resources: [{ resource: a, route: engine, fields: { x: string }, extra: 1 }]`,
      /resources.0: Unrecognized key/,
    ],
    [
      "bad route",
      `${header}resources: [{ resource: a, route: vault, fields: { x: string } }]`,
      /resources.0.route/,
    ],
    [
      "bad type",
      `${header}resources: [{ resource: a, route: engine, fields: { x: text } }]`,
      /resources.0.fields.x/,
    ],
    [
      "a route with no fields",
      `${header}resources: [{ resource: a, route: engine, fields: {} }]`,
      /resources.0.fields: lists no field, yet a route is given \(list at least one field to encrypt, or drop route to store a in the clear/,
    ],
    [
      "fields with no route",
      `${header}resources: [{ resource: a, fields: { x: string } }]`,
      /resources.0.route: is missing, and a has fields to encrypt \(give route: engine or route: field-service for the fields of a\)/,
    ],
    [
      "bad path",
      `${header}resources: [{ resource: a, route: engine, fields: { "a..b": string } }]`,
      /dot-separated path/,
    ],
    [
      "duplicate resource",
      `${header}resources: [{ resource: a, route: engine, fields: { x: string } }, { resource: a, route: engine, fields: { y: string } }]`,
      /resources.1.resource: a is listed twice/,
    ],
    [
      "nested overlap",
      `${header}resources: [{ resource: a, route: engine, fields: { config: json, config.secret: string } }]`,
      /config.secret is inside config/,
    ],
    [
      "plaintext and encrypted",
      `${header}resources: [{ resource: a, route: engine, fields: { x: string }, plaintextChecked: [x] }]`,
      /x is also an encrypted field/,
    ],
    ["wrong kind", "apiVersion: kms-envelope/v1\nkind: Other\nresources: []", /kind/],
    // zod used to drop this key silently: the field stayed in the clear, and as the only field
    // it turned the entry into a resource declared plain on purpose.
    [
      "a field named __proto__",
      `${header}resources: [{ resource: a, route: engine, fields: { _: string, __proto__: string } }]`,
      /resources.0.fields: "__proto__" cannot name an encrypted field/,
    ],
    [
      "__proto__ as the only field",
      `${header}resources: [{ resource: a, fields: { __proto__: {} } }]`,
      /resources.0.fields: "__proto__" cannot name an encrypted field/,
    ],
    [
      "a lookup on a json field",
      `${header}resources: [{ resource: a, route: field-service, fields: { x: { type: json, lookup: [trim] } } }]`,
      /resources.0.fields.x.lookup: is given for a json field; only string fields can have lookup tokens \(drop lookup from x/,
    ],
    [
      "a lookup on an engine resource",
      `${header}resources: [{ resource: a, route: engine, fields: { email: { type: string, lookup: [] } } }]`,
      /resources.0.fields.email.lookup: is given on a, whose route is engine; .*workspace keys.* \(give a route: field-service to search email, or drop lookup\)/,
    ],
    [
      "an unknown normalizer",
      `${header}resources: [{ resource: a, route: field-service, fields: { x: { type: string, lookup: [casefold] } } }]`,
      /resources.0.fields.x.lookup.0: Invalid option: expected one of "trim"\|"lowercase"\|"nfc"/,
    ],
    [
      "an unknown key in a field",
      `${header}resources: [{ resource: a, route: field-service, fields: { x: { type: string, index: true } } }]`,
      /resources.0.fields.x: Unrecognized key: "index"/,
    ],
    [
      "a long form without a type",
      `${header}resources: [{ resource: a, route: field-service, fields: { x: { lookup: [trim] } } }]`,
      /resources.0.fields.x.type: Invalid option/,
    ],
  ];
  for (const [name, text, message] of invalid)
    it(`refuses: ${name}`, () => assert.throws(() => parseFieldMap(text), message));

  it("a field may be written long, with the normalizers of its lookup tokens; the short form stays", () => {
    const map = parseFieldMap(
      `${header}resources:\n  - resource: users\n    route: field-service\n    fields:\n      email: { type: string, lookup: [trim, lowercase] }\n      handle: { type: string, lookup: [] }\n      name: { type: string }\n      bio: string\n`,
    );
    const users = map.resources.get("users");
    assert.deepEqual(
      users?.fields,
      new Map([
        ["email", "string"],
        ["handle", "string"],
        ["name", "string"],
        ["bio", "string"],
      ]),
    );
    assert.deepEqual(
      users?.lookups,
      new Map([
        ["email", ["trim", "lowercase"]],
        ["handle", []],
      ]),
    );
  });

  it("an entry with no fields (and no route) declares a resource stored in the clear on purpose", () => {
    const map = parseFieldMap(
      `${header}resources:\n  - resource: notes\n  - { resource: drafts, fields: {}, plaintextChecked: [title] }\n`,
    );
    assert.deepEqual(map.resources.get("notes"), {
      resource: "notes",
      route: undefined,
      fields: new Map(),
      plaintextChecked: [],
      lookups: new Map(),
    });
    assert.deepEqual(map.resources.get("drafts")?.plaintextChecked, ["title"]);
  });
});

describe("field paths and values", () => {
  it("reads and replaces nested paths without modifying the input", () => {
    const document = { a: { b: { c: "x" }, keep: 1 }, top: true };
    const changed = withPath(document, "a.b.c", "y");
    assert.equal(getPath(changed, "a.b.c"), "y");
    assert.equal(getPath(document, "a.b.c"), "x");
    assert.equal(getPath(changed, "a.keep"), 1);
    assert.equal(getPath(document, "a.missing.c"), undefined);
  });

  it("encodes strings as UTF-8, JSON values as JSON text and bytes as bytes, and restores them", () => {
    assert.equal(Buffer.from(valueToBytes("é", "string", "f")).toString("hex"), "c3a9");
    assert.equal(Buffer.from(valueToBytes({ n: 1 }, "json", "f")).toString(), '{"n":1}');
    assert.equal(Buffer.from(valueToBytes("AAE=", "bytes", "f")).toString("hex"), "0001");
    assert.deepEqual(bytesToValue(Buffer.from("[1,true]"), "json", "f"), [1, true]);
    assert.throws(() => valueToBytes("not base64!", "bytes", "f"), /bytes field/);
    assert.throws(() => bytesToValue(Buffer.from([0xff]), "string", "f"), /not UTF-8 text/);
  });
});
