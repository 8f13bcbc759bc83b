import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { dekSourceCacheKey } from "../../../src/engine/kms/dek-source-cache-key.js";
import {
  DekSourceType,
  decodeEncryptedObject,
  encodeEncryptedObject,
} from "../../../src/engine/kms/encrypted-object.js";

describe("EncryptedObject decoding", () => {
  it("reads an annotation entry that omits its value as empty bytes, as Go does, and can key the DEK cache with it", () => {
    // encryptedData [1], keyID "k", encryptedDEKSource [1], annotations { key "a.b" } with no
    // value field: the minimal case the fuzz tests found, which made dekSourceCacheKey throw
    // a TypeError on the [] protobufjs put in place of the value.
    const stored = Uint8Array.from([10, 1, 1, 18, 1, 107, 26, 1, 1, 34, 5, 10, 3, 97, 46, 98]);
    const object = decodeEncryptedObject(stored);
    const value = object.annotations.get("a.b");
    assert.ok(value instanceof Uint8Array);
    assert.equal(value.length, 0);
    const explicit = decodeEncryptedObject(
      encodeEncryptedObject({
        encryptedData: Uint8Array.of(1),
        keyId: "k",
        encryptedDekSource: Uint8Array.of(1),
        annotations: new Map([["a.b", new Uint8Array(0)]]),
        dekSourceType: DekSourceType.AesGcmKey,
      }),
    );
    assert.equal(dekSourceCacheKey(object), dekSourceCacheKey(explicit));
  });
});
