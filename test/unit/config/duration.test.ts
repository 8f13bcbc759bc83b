import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { durationSchema } from "../../../src/config/duration.js";

describe("durationSchema", () => {
  test("Go-style ms, s, m and h durations parse to milliseconds", () => {
    const cases: [string, number][] = [
      ["0s", 0],
      ["500ms", 500],
      ["30s", 30_000],
      ["1.5s", 1_500],
      ["5m", 300_000],
      ["1h", 3_600_000],
      [" 2m ", 120_000],
      ["0.0005s", 1],
    ];
    for (const [text, milliseconds] of cases) {
      assert.equal(durationSchema.parse(text), milliseconds, text);
    }
  });

  test("numbers without a unit, unknown units, signs and compound forms are refused", () => {
    for (const text of ["", "30", "1d", "-1s", "+1s", "1m30s", "s", "1.s", "1 s", "5M"]) {
      const result = durationSchema.safeParse(text);
      assert.equal(result.success, false, text);
      assert.match(result.error?.issues[0]?.message ?? "", /duration such as 500ms, 30s, 5m or 1h/);
    }
  });
});
