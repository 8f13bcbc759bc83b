import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  checkPlacement,
  type RecordPlacement,
  recordFromLine,
} from "../../../src/cli/store-input.js";
import { hasCode } from "../../support/error-assertions.js";

const plain: RecordPlacement = { idField: "id", workspaceRequired: false };
const line = (text: string, number = 4) => ({ number, text });

describe("recordFromLine", () => {
  test("the id comes from --id-field (a dotted path too) and the document is kept whole", () => {
    const text = '{"meta":{"key":"m-1"},"content":"hello"}';
    assert.deepEqual(recordFromLine(line(text), { ...plain, idField: "meta.key" }), {
      id: "m-1",
      document: { meta: { key: "m-1" }, content: "hello" },
    });
  });

  test("subject and workspace are left out unless a flag names them, so --replace keeps the stored ones", () => {
    const record = recordFromLine(line('{"id":"a","owner":"ada","ws":"w1"}'), plain);
    assert.equal("subjectId" in record, false);
    assert.equal("workspace" in record, false);
    const placed = recordFromLine(line('{"id":"a","owner":"ada","ws":"w1"}'), {
      ...plain,
      subjectField: "owner",
      workspaceField: "ws",
    });
    assert.equal(placed.subjectId, "ada");
    assert.equal(placed.workspace, "w1");
    assert.equal(recordFromLine(line('{"id":"a"}'), { ...plain, workspace: "w2" }).workspace, "w2");
  });

  test("an absent or null subject or workspace is none (null), unless the resource needs a workspace", () => {
    const placement = { ...plain, subjectField: "owner", workspaceField: "ws" };
    const record = recordFromLine(line('{"id":"a","owner":null}'), placement);
    assert.equal(record.subjectId, null);
    assert.equal(record.workspace, null);
    assert.throws(
      () => recordFromLine(line('{"id":"a"}', 9), { ...placement, workspaceRequired: true }),
      hasCode(
        "INVALID_REQUEST",
        "line 9 has no ws (--workspace-field): its fields are sealed under workspace keys",
      ),
    );
  });

  test("a missing id is refused naming the line and the flag", () => {
    for (const text of ['{"name":"x"}', '{"id":null}']) {
      assert.throws(
        () => recordFromLine(line(text, 12), plain),
        hasCode(
          "INVALID_REQUEST",
          "line 12 has no id (--id-field): every record needs a string id",
        ),
      );
    }
  });

  test("an id, subject or workspace that is not a non-empty string is refused by kind, never by value", () => {
    const cases: [string, Partial<RecordPlacement>, string][] = [
      ['{"id":12345}', {}, "--id-field id must be a non-empty string, not a number"],
      ['{"id":""}', {}, "--id-field id must be a non-empty string, not an empty string"],
      [
        '{"id":{"k":"secret-value"}}',
        {},
        "--id-field id must be a non-empty string, not an object",
      ],
      ['{"id":["a"]}', {}, "--id-field id must be a non-empty string, not an array"],
      [
        '{"id":"a","o":true}',
        { subjectField: "o" },
        "--subject-field o must be a non-empty string, not a boolean",
      ],
      [
        '{"id":"a","w":7}',
        { workspaceField: "w" },
        "--workspace-field w must be a non-empty string, not a number",
      ],
    ];
    for (const [text, placement, message] of cases) {
      assert.throws(
        () => recordFromLine(line(text, 2), { ...plain, ...placement }),
        hasCode("INVALID_REQUEST", `line 2: ${message}`),
      );
    }
  });

  test("a line that is not a JSON object is refused naming the line", () => {
    assert.throws(
      () => recordFromLine(line('{"id":"a",', 3), plain),
      hasCode("INVALID_REQUEST", "line 3 is not JSON"),
    );
    assert.throws(
      () => recordFromLine(line("[]", 5), plain),
      hasCode("INVALID_REQUEST", "line 5 must be a JSON object"),
    );
  });
});

describe("checkPlacement", () => {
  const encrypted = ["email", "config.clientSecret"];

  test("a plain id, subject and workspace field is accepted", () => {
    checkPlacement({ ...plain, subjectField: "owner", workspaceField: "ws" }, "users", encrypted);
  });

  test("no flag may take its value from an encrypted field (or from inside one): it would be stored in the clear", () => {
    const cases: [Partial<RecordPlacement>, string][] = [
      [{ idField: "email" }, "--id-field email: the field map encrypts email of users"],
      [
        { subjectField: "email.local" },
        "--subject-field email.local: the field map encrypts email of users",
      ],
      [
        { workspaceField: "config.clientSecret" },
        "--workspace-field config.clientSecret: the field map encrypts config.clientSecret of users",
      ],
    ];
    for (const [placement, start] of cases) {
      assert.throws(
        () => checkPlacement({ ...plain, ...placement }, "users", encrypted),
        hasCode(
          "INVALID_CONFIG",
          new RegExp(
            `^${start.replaceAll(".", "\\.")}, but --\\w+-field values are stored in the clear \\(name a plain field\\)$`,
          ),
        ),
      );
    }
  });

  test("a resource under workspace keys needs --workspace or --workspace-field; an empty --workspace is refused", () => {
    assert.throws(
      () => checkPlacement({ ...plain, workspaceRequired: true }, "messages", []),
      hasCode(
        "INVALID_CONFIG",
        "--workspace: messages is sealed under workspace keys and no workspace was given (give --workspace WORKSPACE or --workspace-field PATH)",
      ),
    );
    checkPlacement({ ...plain, workspaceRequired: true, workspace: "w" }, "messages", []);
    checkPlacement({ ...plain, workspaceRequired: true, workspaceField: "ws" }, "messages", []);
    assert.throws(
      () => checkPlacement({ ...plain, workspace: "" }, "messages", []),
      hasCode("INVALID_CONFIG", "--workspace: is empty (give the workspace the records belong to)"),
    );
  });
});
