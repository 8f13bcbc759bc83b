import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { dekSourceCacheKey } from "../../../src/engine/kms/dek-source-cache-key.js";
import {
  DekSourceType,
  decodeEncryptedObject,
  type EncryptedObject,
  encodeEncryptedObject,
} from "../../../src/engine/kms/encrypted-object.js";
import { mutationOf, outcome, PROTOTYPE_NAMES, protobufMessage, runs } from "./fuzz-support.js";

const label = fc.stringMatching(/^[a-z0-9](?:[a-z0-9-]{0,8}[a-z0-9])?$/);

// Objects kube-apiserver's ValidateEncryptedObject accepts.
const validObjects: fc.Arbitrary<EncryptedObject> = fc.record({
  encryptedData: fc.uint8Array({ minLength: 1, maxLength: 120 }),
  keyId: fc.string({ unit: "binary", minLength: 1, maxLength: 40 }),
  encryptedDekSource: fc.uint8Array({ minLength: 1, maxLength: 80 }),
  annotations: fc
    .dictionary(
      fc.tuple(label, label).map(([a, b]) => `${a}.${b}`),
      fc.uint8Array({ maxLength: 24 }),
      { maxKeys: 3 },
    )
    .map((entries) => new Map(Object.entries(entries))),
  dekSourceType: fc.constantFrom(DekSourceType.AesGcmKey, DekSourceType.HkdfSha256XNonceAesGcmSeed),
});

const encoded = validObjects.map((object) => encodeEncryptedObject(object));

function plain(object: EncryptedObject) {
  return {
    ...object,
    encryptedData: Buffer.from(object.encryptedData),
    encryptedDekSource: Buffer.from(object.encryptedDekSource),
    annotations: [...object.annotations].map(([key, value]) => [key, Buffer.from(value)]),
  };
}

/** What a decoded object must look like for the engine to use it without a type error. */
function assertUsable(object: EncryptedObject): void {
  assert.ok(object.encryptedData instanceof Uint8Array && object.encryptedData.length > 0);
  assert.ok(typeof object.keyId === "string" && object.keyId.length > 0);
  assert.ok(object.encryptedDekSource instanceof Uint8Array);
  assert.ok(object.encryptedDekSource.length > 0);
  assert.ok(object.dekSourceType in DekSourceType);
  for (const [key, value] of object.annotations) {
    assert.equal(typeof key, "string");
    assert.ok(value instanceof Uint8Array, `annotation ${key} is not bytes`);
  }
  // The engine keys its DEK cache on the object before asking the plugin about it.
  assert.equal(typeof dekSourceCacheKey(object), "string");
}

describe("fuzz: KMS v2 EncryptedObject protobuf", () => {
  it("arbitrary bytes and protobuf wire messages never escape decodeEncryptedObject as anything but MalformedCiphertextError", () => {
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 200 }), protobufMessage), (bytes) => {
        const result = outcome(() => decodeEncryptedObject(bytes), ["MALFORMED_CIPHERTEXT"]);
        if (result.ok) assertUsable(result.value);
      }),
      runs(2000),
    );
  });

  it("decodeEncryptedObject inverts encodeEncryptedObject for every object kube-apiserver accepts", () => {
    fc.assert(
      fc.property(validObjects, (object) => {
        assert.deepEqual(
          plain(decodeEncryptedObject(encodeEncryptedObject(object))),
          plain(object),
        );
      }),
      runs(500),
    );
  });

  it("a mutated EncryptedObject decodes to a usable object or is refused with MalformedCiphertextError", () => {
    fc.assert(
      fc.property(
        encoded.chain((bytes) => mutationOf(bytes)),
        (bytes) => {
          const result = outcome(() => decodeEncryptedObject(bytes), ["MALFORMED_CIPHERTEXT"]);
          if (result.ok) assertUsable(result.value);
        },
      ),
      runs(1500),
    );
  });

  it("annotation keys that are not DNS names, prototype names included, are refused with MalformedCiphertextError", () => {
    fc.assert(
      fc.property(
        validObjects,
        fc.oneof(fc.constantFrom(...PROTOTYPE_NAMES, "", "a", "A.b", "a..b", "-a.b"), fc.string()),
        (object, key) => {
          // Encoded by hand: encodeEncryptedObject refuses such keys before writing them.
          const bytes = encodeEncryptedObject(object);
          const entry = Buffer.concat([
            Buffer.from([0x0a]),
            varintBuffer(Buffer.byteLength(key)),
            Buffer.from(key),
            Buffer.from([0x12, 0x01, 0x00]),
          ]);
          const field = Buffer.concat([Buffer.from([0x22]), varintBuffer(entry.length), entry]);
          const result = outcome(
            () => decodeEncryptedObject(Buffer.concat([bytes, field])),
            ["MALFORMED_CIPHERTEXT"],
          );
          if (result.ok) {
            assertUsable(result.value);
            assert.ok(result.value.annotations.has(key), `annotation ${JSON.stringify(key)} lost`);
          }
        },
      ),
      runs(500),
    );
  });
});

function varintBuffer(value: number): Buffer {
  const out: number[] = [];
  let rest = value;
  while (rest >= 0x80) {
    out.push((rest & 0x7f) | 0x80);
    rest >>>= 7;
  }
  out.push(rest);
  return Buffer.from(out);
}
