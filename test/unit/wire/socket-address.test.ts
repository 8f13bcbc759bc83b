import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { defaultSocketPath, grpcAddress } from "../../../src/wire/socket-address.js";

describe("grpcAddress", () => {
  test("a socket path becomes the grpc-js unix: address", () => {
    assert.equal(grpcAddress("/run/kms.sock"), "unix:/run/kms.sock");
  });
});

describe("defaultSocketPath", () => {
  test("the socket lives in the run directory", () => {
    assert.equal(defaultSocketPath("/run/kms-envelope"), "/run/kms-envelope/kms.sock");
  });
});
