import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { ServiceDefinition } from "@grpc/grpc-js";
import {
  isUndecodable,
  services,
  UNDECODABLE,
  withSafeDeserializers,
} from "../../../src/server/protos.js";

// Bytes protobufjs cannot decode as any of our messages: a tag with no length, a truncated
// varint tag, a truncated fixed32, and a varint longer than ten bytes. (A truncated *string*
// field is not among them: protobufjs' Node reader clamps it instead of throwing.)
const GARBAGE = [
  Buffer.from([0x0a]),
  Buffer.from([0xff]),
  Buffer.from([0x0d, 0x00, 0x00]),
  Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
];

const DEFINITIONS: [string, ServiceDefinition][] = [
  ["v2", services.kmsV2.service],
  ["v1beta1", services.kmsV1.service],
  ["field", services.field.service],
  ["health", services.health.service],
];

describe("withSafeDeserializers", () => {
  for (const [name, definition] of DEFINITIONS) {
    test(`${name}: garbage bytes give the UNDECODABLE marker instead of throwing`, () => {
      const safe = withSafeDeserializers(definition);
      for (const [method, handler] of Object.entries(safe)) {
        for (const bytes of GARBAGE) {
          assert.throws(
            () => definition[method]?.requestDeserialize(bytes),
            Error,
            `the raw ${method} deserializer throws on ${bytes.toString("hex")}`,
          );
          const request = handler.requestDeserialize(bytes) as object;
          assert.ok(isUndecodable(request), `${method} ${bytes.toString("hex")}`);
          assert.equal(typeof request[UNDECODABLE], "string");
        }
      }
    });
  }

  test("valid requests still decode exactly as the original deserializer does", () => {
    const definition = services.kmsV2.service;
    const safe = withSafeDeserializers(definition);
    const method = Object.keys(definition).find((key) => /^decrypt$/i.test(key)) as string;
    const original = definition[method];
    assert.ok(original !== undefined);
    const bytes = original.requestSerialize({
      uid: "uid-1",
      ciphertext: Buffer.from([1, 2, 3]),
      key_id: "local:abc",
      annotations: {},
    });
    const decoded = safe[method]?.requestDeserialize(bytes) as Record<string, unknown>;
    assert.equal(isUndecodable(decoded), false);
    assert.deepEqual(decoded, original.requestDeserialize(bytes));
    assert.equal(decoded.uid, "uid-1");
    assert.equal(decoded.key_id, "local:abc");
    assert.deepEqual(decoded.ciphertext, Buffer.from([1, 2, 3]));
  });

  test("an empty message decodes to defaults, not the marker", () => {
    const safe = withSafeDeserializers(services.kmsV2.service);
    for (const handler of Object.values(safe)) {
      assert.equal(isUndecodable(handler.requestDeserialize(Buffer.alloc(0)) as object), false);
    }
  });

  test("everything but requestDeserialize is kept: paths, streaming flags, serializers", () => {
    const definition = services.kmsV2.service;
    const safe = withSafeDeserializers(definition);
    assert.deepEqual(Object.keys(safe), Object.keys(definition));
    for (const [method, original] of Object.entries(definition)) {
      const wrapped = safe[method];
      assert.ok(wrapped !== undefined);
      assert.equal(wrapped.path, original.path);
      assert.equal(wrapped.requestStream, original.requestStream);
      assert.equal(wrapped.responseStream, original.responseStream);
      assert.equal(wrapped.requestSerialize, original.requestSerialize);
      assert.equal(wrapped.responseSerialize, original.responseSerialize);
      assert.equal(wrapped.responseDeserialize, original.responseDeserialize);
    }
  });

  test("isUndecodable is false for ordinary objects", () => {
    assert.equal(isUndecodable({}), false);
    assert.equal(isUndecodable({ UNDECODABLE: "x" }), false);
  });
});
