import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { describe, test } from "node:test";
import { numberedLines, parseDocument } from "../../../src/cli/json-lines.js";
import { hasCode } from "../../support/error-assertions.js";

describe("parseDocument", () => {
  test("a JSON object comes back as it was written", () => {
    assert.deepEqual(parseDocument('{"id":"a","n":[1,{"x":null}]}', "line 1"), {
      id: "a",
      n: [1, { x: null }],
    });
  });

  test("text that is not JSON is INVALID_REQUEST naming where, never quoting the text", () => {
    assert.throws(
      () => parseDocument('{"password":"hunter2"', "line 7"),
      hasCode("INVALID_REQUEST", "line 7 is not JSON"),
    );
  });

  test("JSON that is not an object (array, string, number, null) is refused naming where", () => {
    for (const text of ["[1,2]", '"secret"', "42", "null"]) {
      assert.throws(
        () => parseDocument(text, "line 3"),
        hasCode("INVALID_REQUEST", "line 3 must be a JSON object"),
      );
    }
  });
});

describe("numberedLines", () => {
  const lines = async (text: string) => {
    const out = [];
    for await (const line of numberedLines(Readable.from([text]))) out.push(line);
    return out;
  };

  test("blank lines are skipped but counted, so numbers match the file an editor shows", async () => {
    assert.deepEqual(await lines('{"a":1}\n\n  \n{"b":2}\n'), [
      { number: 1, text: '{"a":1}' },
      { number: 4, text: '{"b":2}' },
    ]);
  });

  test("CRLF line ends and a last line without a newline are read like any other", async () => {
    assert.deepEqual(await lines('{"a":1}\r\n{"b":2}'), [
      { number: 1, text: '{"a":1}' },
      { number: 2, text: '{"b":2}' },
    ]);
  });
});
