import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { MethodDefinition } from "@grpc/grpc-js";
import fc from "fast-check";
import {
  decodeDecryptRequest,
  decodeEncryptRequest,
  encodeDecryptResponse,
  encodeEncryptResponse,
} from "../../../src/wire/kms-v2-codec.js";
import { MalformedProtobufError } from "../../../src/wire/protobuf-wire.js";
import { services } from "../../../src/wire/protos.js";
import { runs } from "./fuzz-support.js";

// The reference: proto-loader's protobufjs codec for the same messages, as the daemon used it.
const reference = (name: string) =>
  services.kmsV2.service[name] as MethodDefinition<object, object>;
const encryptMethod = reference("Encrypt");
const decryptMethod = reference("Decrypt");

// Short and long values: lengths of 128 and more take a two-byte varint.
const bytes = fc
  .oneof(fc.uint8Array({ maxLength: 40 }), fc.uint8Array({ minLength: 120, maxLength: 400 }))
  .map((value) => Buffer.from(value));
const text = fc.string({ unit: "binary", maxLength: 80 });
const annotations = fc.dictionary(text, bytes, { maxKeys: 4 });

/** An unknown field (number past the message's own) of any proto3 wire type, encoded. */
const unknownField = fc
  .record({
    field: fc.integer({ min: 5, max: 2 ** 29 - 1 }),
    value: fc.oneof(
      fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map((value) => ({ wire: 0, value })),
      fc.uint8Array({ minLength: 8, maxLength: 8 }).map((value) => ({ wire: 1, value })),
      fc.uint8Array({ maxLength: 40 }).map((value) => ({ wire: 2, value })),
      fc.uint8Array({ minLength: 4, maxLength: 4 }).map((value) => ({ wire: 5, value })),
    ),
  })
  .map(({ field, value }) => {
    const parts = [varint(BigInt(field) * 8n + BigInt(value.wire))];
    if (value.wire === 0) parts.push(varint(value.value as bigint));
    else if (value.wire === 2) {
      const payload = value.value as Uint8Array;
      parts.push(varint(BigInt(payload.length)), Buffer.from(payload));
    } else parts.push(Buffer.from(value.value as Uint8Array));
    return Buffer.concat(parts);
  });

function varint(value: bigint): Buffer {
  const out: number[] = [];
  let rest = value;
  while (rest >= 0x80n) {
    out.push(Number(rest & 0x7fn) | 0x80);
    rest >>= 7n;
  }
  out.push(Number(rest));
  return Buffer.from(out);
}

/** A serialized message with unknown fields put in front, between and after its own. */
function withUnknown(message: Buffer, extra: Buffer[], cut: number): Buffer {
  const at = Math.min(cut, extra.length);
  return Buffer.concat([...extra.slice(0, at), message, ...extra.slice(at)]);
}

/** Our decoding must be protobufjs's (a string from invalid UTF-8 is not compared). */
function assertSameDecoding(ours: object, theirs: object): void {
  for (const [name, value] of Object.entries(theirs)) {
    const mine = (ours as Record<string, unknown>)[name];
    if (typeof value === "string" && value.includes("\uFFFD")) continue;
    if (name === "annotations") {
      assert.deepEqual(
        Object.entries(mine as object).map(([key, entry]) => [key, Buffer.from(entry)]),
        Object.entries(value as object).map(([key, entry]) => [key, Buffer.from(entry)]),
      );
      continue;
    }
    assert.deepEqual(mine, value, name);
  }
}

function ourOutcome(decode: (message: Buffer) => object, message: Buffer): object | undefined {
  try {
    return decode(message);
  } catch (error) {
    assert.ok(error instanceof MalformedProtobufError, `unexpected ${String(error)}`);
    return undefined;
  }
}

describe("KMS v2 codec (hand-written) against protobufjs", () => {
  it("decodes every EncryptRequest protobufjs writes, unknown fields skipped", () => {
    fc.assert(
      fc.property(
        bytes,
        text,
        fc.array(unknownField, { maxLength: 3 }),
        fc.nat(3),
        (plaintext, uid, extra, cut) => {
          const message = withUnknown(
            encryptMethod.requestSerialize({ plaintext, uid }),
            extra,
            cut,
          );
          assertSameDecoding(
            decodeEncryptRequest(message),
            encryptMethod.requestDeserialize(message),
          );
        },
      ),
      runs(400),
    );
  });

  it("decodes every DecryptRequest protobufjs writes, annotations included", () => {
    fc.assert(
      fc.property(
        bytes,
        text,
        text,
        annotations,
        fc.array(unknownField, { maxLength: 3 }),
        fc.nat(3),
        (ciphertext, uid, keyId, notes, extra, cut) => {
          const message = withUnknown(
            decryptMethod.requestSerialize({ ciphertext, uid, key_id: keyId, annotations: notes }),
            extra,
            cut,
          );
          assertSameDecoding(
            decodeDecryptRequest(message),
            decryptMethod.requestDeserialize(message),
          );
        },
      ),
      runs(400),
    );
  });

  it("encodes responses to the bytes protobufjs wrote, set-but-empty fields included", () => {
    fc.assert(
      fc.property(
        fc.option(bytes, { nil: undefined }),
        fc.option(text, { nil: undefined }),
        fc.option(annotations, { nil: undefined }),
        (ciphertext, keyId, notes) => {
          const response = {
            ...(ciphertext === undefined ? {} : { ciphertext }),
            ...(keyId === undefined ? {} : { key_id: keyId }),
            ...(notes === undefined ? {} : { annotations: notes }),
          };
          assert.deepEqual(
            encodeEncryptResponse(response),
            Buffer.from(encryptMethod.responseSerialize(response)),
          );
          const decrypted = ciphertext === undefined ? {} : { plaintext: ciphertext };
          assert.deepEqual(
            encodeDecryptResponse(decrypted),
            Buffer.from(decryptMethod.responseSerialize(decrypted)),
          );
        },
      ),
      runs(400),
    );
  });

  it("refuses malformed bytes with its own error, and agrees with protobufjs on what it accepts", () => {
    const messages = fc.oneof(
      fc.uint8Array({ maxLength: 120 }).map((value) => Buffer.from(value)),
      // Valid messages cut short or with a byte changed: near misses reach deeper.
      fc
        .tuple(bytes, text, text, fc.nat(), fc.nat(255))
        .map(([ciphertext, uid, keyId, at, byte]) => {
          const whole = Buffer.from(
            decryptMethod.requestSerialize({ ciphertext, uid, key_id: keyId }),
          );
          if (whole.length === 0) return whole;
          const mutated = Buffer.from(whole);
          mutated[at % whole.length] = byte;
          return at % 2 === 0 ? mutated : whole.subarray(0, at % whole.length);
        }),
    );
    fc.assert(
      fc.property(messages, (message) => {
        for (const [decode, method] of [
          [decodeEncryptRequest, encryptMethod],
          [decodeDecryptRequest, decryptMethod],
        ] as const) {
          const ours = ourOutcome(decode, message);
          if (ours === undefined) continue;
          // Whatever we accept is a message protobufjs reads the same way.
          assertSameDecoding(ours, method.requestDeserialize(message));
        }
      }),
      runs(3000),
    );
  });

  it("names the problem for each kind of malformed message", () => {
    const cases: [string, number[]][] = [
      ["truncated varint", [0x0a]],
      ["length past the end", [0x0a, 0x05, 0x01]],
      ["field number 0", [0x02, 0x00]],
      ["wire type 3", [0x2b]],
      // plaintext (field 1) sent as a varint instead of bytes
      ["field 1 has wire type 0", [0x08, 0x01]],
      ["varint too large", [0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]],
    ];
    for (const [problem, message] of cases) {
      assert.throws(
        () => decodeEncryptRequest(Buffer.from(message)),
        (error: unknown) =>
          error instanceof MalformedProtobufError && error.message.includes(problem),
        problem,
      );
    }
  });
});
