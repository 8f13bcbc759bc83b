import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { decodeGoStdBase64 } from "../../../../src/engine/config/go-base64.js";
import { parseGoDuration } from "../../../../src/engine/config/go-duration.js";
import { parseGoUrl } from "../../../../src/engine/config/go-url.js";

describe("parseGoDuration (Go time.ParseDuration)", () => {
  test("accepts Go's syntax", () => {
    const cases: [string, bigint][] = [
      ["0", 0n],
      ["3s", 3_000_000_000n],
      ["+5m", 300_000_000_000n],
      ["-1.5h", -5_400_000_000_000n],
      ["1h2m3s4ms5us6ns", 3_723_004_005_006n],
      ["1µs", 1000n],
      ["1μs", 1000n],
      [".5s", 500_000_000n],
      ["1.s", 1_000_000_000n],
      ["9223372036854775807ns", 9_223_372_036_854_775_807n],
      ["-9223372036854775808ns", -9_223_372_036_854_775_808n],
    ];
    for (const [text, nanoseconds] of cases) {
      assert.deepEqual(parseGoDuration(text), { ok: true, nanoseconds }, text);
    }
  });

  test("refuses what Go refuses, with Go's messages", () => {
    const cases: [string, string][] = [
      ["", 'time: invalid duration ""'],
      ["-", 'time: invalid duration "-"'],
      ["s", 'time: invalid duration "s"'],
      [".s", 'time: invalid duration ".s"'],
      ["3", 'time: missing unit in duration "3"'],
      ["1d", 'time: unknown unit "d" in duration "1d"'],
      ["1S", 'time: unknown unit "S" in duration "1S"'],
      ["9223372036854775808ns", 'time: invalid duration "9223372036854775808ns"'],
      ["3000000h", 'time: invalid duration "3000000h"'],
    ];
    for (const [text, error] of cases) {
      assert.deepEqual(parseGoDuration(text), { ok: false, error }, text);
    }
  });
});

describe("parseGoUrl (Go net/url.Parse, as far as endpoints need)", () => {
  test("scheme and unescaped path", () => {
    const cases: [string, string, string][] = [
      ["unix:///var/run/kms.sock", "unix", "/var/run/kms.sock"],
      ["UNIX:///x", "unix", "/x"],
      ["unix:///@abstract", "unix", "/@abstract"],
      ["unix://ignored-host/x", "unix", "/x"],
      ["unix:relative.sock", "unix", ""],
      ["unix:///a%20b?q#frag", "unix", "/a b"],
      ["/plain/path", "", "/plain/path"],
      ["a:b/c", "a", ""],
    ];
    for (const [raw, scheme, path] of cases) {
      assert.deepEqual(parseGoUrl(raw), { ok: true, scheme, path }, raw);
    }
  });

  test("the errors Go reports", () => {
    const cases: [string, RegExp][] = [
      [":x", /missing protocol scheme/],
      ["unix:///a\nb", /invalid control character/],
      ["unix:///a%2", /invalid URL escape "%2"/],
      ["unix:///#%zz", /invalid URL escape "%zz"/],
      ["unix://h:p/x", /invalid port ":p" after host/],
      ["unix://[::1/x", /missing '\]' in host/],
      ["unix://h^st/x", /invalid character "\^" in host name/],
      ["unix://%41/x", /invalid URL escape "%41"/],
      ["unix://us er@h/x", /invalid userinfo/],
      ["1unix://x", /first path segment in URL cannot contain colon/],
      ["a b:c", /first path segment in URL cannot contain colon/],
    ];
    for (const [raw, error] of cases) {
      const result = parseGoUrl(raw);
      assert.ok(!result.ok, `${JSON.stringify(raw)} is refused`);
      assert.match(result.error, error, raw);
    }
  });
});

describe("decodeGoStdBase64 (Go base64.StdEncoding)", () => {
  test("padding is required and CR/LF are skipped", () => {
    assert.deepEqual(decodeGoStdBase64("aGk="), new Uint8Array([0x68, 0x69]));
    assert.deepEqual(decodeGoStdBase64("aG\nk=\r\n"), new Uint8Array([0x68, 0x69]));
    assert.deepEqual(decodeGoStdBase64(""), new Uint8Array(0));
    for (const bad of ["aGk", "aGk==", "aG=k", "a-_=", "aGk= ", "====", "a==="]) {
      assert.equal(decodeGoStdBase64(bad), undefined, bad);
    }
  });
});
