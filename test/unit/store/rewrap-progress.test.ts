import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { describe, test } from "node:test";
import { progressFor } from "../../../src/store/rewrap-progress.js";

function capture(isTTY: boolean): { stream: NodeJS.WriteStream; text: () => string } {
  const stream = new PassThrough();
  let text = "";
  stream.on("data", (chunk: Buffer) => {
    text += chunk.toString();
  });
  return {
    stream: Object.assign(stream, { isTTY, columns: 120 }) as unknown as NodeJS.WriteStream,
    text: () => text,
  };
}

describe("rewrap progress", () => {
  test("without a terminal: plain lines with resource, counts, percentage and rate", () => {
    const output = capture(false);
    const progress = progressFor(output.stream);
    progress.begin("credentials", 200);
    progress.advance(50);
    progress.advance(500);
    progress.end();
    const lines = output.text().trimEnd().split("\n");
    assert.equal(lines[0], "rewrap: credentials 0/200 records (0%), 0 records/s");
    assert.match(
      lines.at(-1) ?? "",
      /^rewrap: credentials 200\/200 records \(100%\), \d+ records\/s$/,
    );
    assert.equal(lines.length, 2, "no line per batch: at most one every few seconds");
  });

  test("on a terminal: a bar that ends at the total", () => {
    const output = capture(true);
    const progress = progressFor(output.stream);
    progress.begin("users", 10);
    progress.advance(10);
    progress.end();
    assert.match(output.text(), /rewrap users \[.*\] 100% \| 10\/10 records/);
  });
});
