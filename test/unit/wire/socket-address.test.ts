import assert from "node:assert/strict";
import { resolve } from "node:path";
import { describe, test } from "node:test";
import { KmsEnvelopeError } from "../../../src/errors.js";
import { grpcAddress, parseSocketPath } from "../../../src/wire/socket-address.js";

function invalidConfig(detail: RegExp) {
  return (error: unknown): boolean => {
    assert.ok(error instanceof KmsEnvelopeError);
    assert.equal(error.code, "INVALID_CONFIG");
    assert.match(error.message, /^--socket: /);
    assert.match(error.message, detail);
    return true;
  };
}

describe("parseSocketPath", () => {
  test("an absolute path is returned as is", () => {
    assert.equal(parseSocketPath("/var/run/kmsplugin/kms.sock"), "/var/run/kmsplugin/kms.sock");
  });

  test("a relative path is resolved against the working directory", () => {
    assert.equal(parseSocketPath("run/kms.sock"), resolve(process.cwd(), "run/kms.sock"));
    assert.equal(parseSocketPath("./kms.sock"), resolve(process.cwd(), "kms.sock"));
  });

  test("the EncryptionConfiguration form unix:///path gives the path", () => {
    assert.equal(
      parseSocketPath("unix:///var/run/kmsplugin/kms.sock"),
      "/var/run/kmsplugin/kms.sock",
    );
  });

  test("surrounding whitespace is ignored", () => {
    assert.equal(parseSocketPath("  /tmp/kms.sock\n"), "/tmp/kms.sock");
  });

  test("abstract sockets (@name and unix:///@name) are refused with INVALID_CONFIG", () => {
    for (const value of ["@kms", "unix:///@kms", "unix://@kms", "@"]) {
      assert.throws(
        () => parseSocketPath(value),
        invalidConfig(/abstract sockets such as "[^"]+" are not supported/),
        value,
      );
    }
  });

  test("schemes other than unix:// are refused with INVALID_CONFIG", () => {
    for (const value of ["http://localhost:8080", "tcp://127.0.0.1:9000", "unix+tls:///x"]) {
      assert.throws(() => parseSocketPath(value), invalidConfig(/only unix:\/\/ endpoints/), value);
    }
  });

  test("an empty or blank value is refused with INVALID_CONFIG", () => {
    for (const value of ["", "   "]) {
      assert.throws(
        () => parseSocketPath(value),
        invalidConfig(/--socket: is empty \(give a path such as /),
      );
    }
  });

  test("unix:// without a path is refused instead of meaning the working directory", () => {
    assert.throws(
      () => parseSocketPath("unix://"),
      invalidConfig(/has no path \(write unix:\/\/\/path\/to\/socket\)/),
    );
  });
});

describe("grpcAddress", () => {
  test("a socket path becomes the grpc-js unix: address", () => {
    assert.equal(grpcAddress("/run/kms.sock"), "unix:/run/kms.sock");
  });
});
