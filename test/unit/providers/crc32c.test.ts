import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { crc32 } from "node:zlib";
import { crc32c } from "../../../providers/crc32c.js";

// Known answers: the CRC catalogue check value and the iSCSI test patterns of RFC 3720 §B.4.
const VECTORS: Array<{ name: string; data: Uint8Array; expected: number }> = [
  { name: "empty input", data: new Uint8Array(0), expected: 0x00000000 },
  {
    name: '"123456789" (catalogue check value)',
    data: Buffer.from("123456789"),
    expected: 0xe3069283,
  },
  { name: "32 bytes of 0x00", data: new Uint8Array(32), expected: 0x8a9136aa },
  { name: "32 bytes of 0xff", data: new Uint8Array(32).fill(0xff), expected: 0x62a8ab43 },
  {
    name: "32 incrementing bytes",
    data: Uint8Array.from({ length: 32 }, (_, index) => index),
    expected: 0x46dd794e,
  },
  {
    name: "32 decrementing bytes",
    data: Uint8Array.from({ length: 32 }, (_, index) => 31 - index),
    expected: 0x113fdb5c,
  },
];

describe("crc32c", () => {
  for (const vector of VECTORS) {
    test(`matches the known answer for ${vector.name}`, () => {
      assert.equal(crc32c(vector.data), vector.expected);
    });
  }

  test("is not the IEEE CRC-32 that zlib.crc32 computes (Cloud KMS requires Castagnoli)", () => {
    const data = Buffer.from("123456789");
    assert.equal(crc32(data), 0xcbf43926);
    assert.notEqual(crc32c(data), crc32(data));
  });
});
