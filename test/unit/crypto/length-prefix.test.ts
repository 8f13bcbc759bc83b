import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { lengthPrefixed, readLengthPrefixed } from "../../../src/crypto/length-prefix.js";
import { MalformedCiphertextError } from "../../../src/errors.js";

function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("hex");
}

function assertMalformed(action: () => unknown, detail: string): void {
  assert.throws(action, (error: unknown) => {
    assert.ok(
      error instanceof MalformedCiphertextError,
      `not a MalformedCiphertextError: ${error}`,
    );
    assert.equal(error.code, "MALFORMED_CIPHERTEXT");
    assert.equal(error.message, `malformed ciphertext: ${detail}`);
    return true;
  });
}

describe("lp(x): 2-byte big-endian length of the UTF-8 bytes of x, then the bytes", () => {
  test("lp of the empty string is the two zero bytes", () => {
    assert.equal(toHex(lengthPrefixed("")), "0000");
  });

  test("lp of an ASCII string is its byte count, big-endian, then its bytes", () => {
    assert.equal(
      toHex(lengthPrefixed("kubernetes")),
      `000a${Buffer.from("kubernetes").toString("hex")}`,
    );
  });

  test("lp counts UTF-8 bytes, not UTF-16 code units", () => {
    assert.equal(toHex(lengthPrefixed("Ω")), "0002cea9");
    assert.equal(toHex(lengthPrefixed("🔐")), "0004f09f9490");
  });

  test("lp accepts a value of exactly 65535 bytes, the 2-byte limit", () => {
    const encoded = lengthPrefixed("a".repeat(0xffff));
    assert.equal(encoded.length, 2 + 0xffff);
    assert.equal(toHex(encoded.subarray(0, 2)), "ffff");
  });

  test("lp refuses a value of 65536 bytes: it does not fit a 2-byte length prefix", () => {
    assert.throws(() => lengthPrefixed("a".repeat(0x10000)), {
      name: "RangeError",
      message: "value of 65536 bytes does not fit a 2-byte length prefix",
    });
  });

  test("lp refuses a value under 65536 characters whose UTF-8 form is over 65535 bytes", () => {
    const text = "€".repeat(21846); // 21846 characters, 65538 UTF-8 bytes
    assert.throws(() => lengthPrefixed(text), {
      name: "RangeError",
      message: "value of 65538 bytes does not fit a 2-byte length prefix",
    });
  });
});

describe("readLengthPrefixed reads back one lp(x)", () => {
  test("a read of lp(x) returns x and the offset just past it", () => {
    for (const text of ["", "local:9frZft6mHSXgg1Bs", "wörkspace-Ω", "a".repeat(0xffff)]) {
      const encoded = lengthPrefixed(text);
      assert.deepEqual(readLengthPrefixed(encoded, 0), { text, next: encoded.length });
    }
  });

  test("consecutive lp values read back in order, each from the offset the last one returned", () => {
    const encoded = Buffer.concat(["users", "email", "rec:42"].map((part) => lengthPrefixed(part)));
    const first = readLengthPrefixed(encoded, 0);
    const second = readLengthPrefixed(encoded, first.next);
    const third = readLengthPrefixed(encoded, second.next);
    assert.deepEqual([first.text, second.text, third.text], ["users", "email", "rec:42"]);
    assert.equal(third.next, encoded.length);
  });

  test("a read from a view that does not start at its buffer's first byte reads the view's bytes", () => {
    const backing = new Uint8Array(64).fill(0xee);
    const encoded = lengthPrefixed("key-id");
    backing.set(encoded, 17);
    const view = backing.subarray(16, 16 + 1 + encoded.length);
    assert.deepEqual(readLengthPrefixed(view, 1), { text: "key-id", next: 1 + encoded.length });
  });

  test("an input with no room for the 2-byte length is a truncated length prefix", () => {
    assertMalformed(() => readLengthPrefixed(new Uint8Array(0), 0), "truncated length prefix");
    assertMalformed(() => readLengthPrefixed(Uint8Array.of(0x00), 0), "truncated length prefix");
    assertMalformed(
      () => readLengthPrefixed(Uint8Array.of(0x01, 0x00), 1),
      "truncated length prefix",
    );
    assertMalformed(
      () => readLengthPrefixed(Uint8Array.of(0x00, 0x00), 3),
      "truncated length prefix",
    );
  });

  test("a length larger than the bytes that follow runs past the end", () => {
    const encoded = lengthPrefixed("kubernetes");
    assertMalformed(
      () => readLengthPrefixed(encoded.subarray(0, encoded.length - 1), 0),
      "length prefix runs past the end",
    );
    assertMalformed(
      () => readLengthPrefixed(Uint8Array.of(0xff, 0xff), 0),
      "length prefix runs past the end",
    );
  });
});
