import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { services } from "../../../src/wire/protos.js";

describe("loaded protos match the upstream contracts", () => {
  test("KMS v2 method paths are the upstream *_FullMethodName constants", () => {
    assert.deepEqual(
      Object.values(services.kmsV2.service).map((method) => method.path),
      [
        "/v2.KeyManagementService/Status",
        "/v2.KeyManagementService/Decrypt",
        "/v2.KeyManagementService/Encrypt",
      ],
    );
  });

  test("KMS v1beta1 method paths are Version, Decrypt and Encrypt under v1beta1", () => {
    assert.deepEqual(
      Object.values(services.kmsV1.service).map((method) => method.path),
      [
        "/v1beta1.KeyManagementService/Version",
        "/v1beta1.KeyManagementService/Decrypt",
        "/v1beta1.KeyManagementService/Encrypt",
      ],
    );
  });

  test("gRPC health has unary Check and server-streaming Watch", () => {
    const [check, watch] = Object.values(services.health.service);
    assert.equal(check?.path, "/grpc.health.v1.Health/Check");
    assert.equal(check?.responseStream, false);
    assert.equal(watch?.path, "/grpc.health.v1.Health/Watch");
    assert.equal(watch?.responseStream, true);
  });

  test("v2 DecryptRequest keeps the wire field names and numbers (key_id = 3, annotations = 4)", () => {
    const method = services.kmsV2.service.Decrypt;
    assert.ok(method !== undefined);
    const bytes = method.requestSerialize({
      ciphertext: Buffer.from([1]),
      uid: "u",
      key_id: "k",
      annotations: { "a.b": Buffer.from([2]) },
    });
    // field 1 bytes, field 2 string, field 3 string, field 4 map entry (key 1, value 2)
    assert.equal(bytes.toString("hex"), "0a0101120175" + "1a016b" + "22080a03612e621201" + "02");
    assert.deepEqual(method.requestDeserialize(bytes), {
      ciphertext: Buffer.from([1]),
      uid: "u",
      key_id: "k",
      annotations: { "a.b": Buffer.from([2]) },
    });
  });

  test("absent proto3 fields decode to defaults, so handlers never see undefined", () => {
    const method = services.kmsV2.service.Decrypt;
    assert.deepEqual(method?.requestDeserialize(Buffer.alloc(0)), {
      ciphertext: Buffer.alloc(0),
      uid: "",
      key_id: "",
      annotations: {},
    });
  });
});
