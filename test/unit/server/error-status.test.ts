import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { status } from "@grpc/grpc-js";
import { ProviderError } from "../../../providers/types.js";
import {
  DecryptionFailedError,
  type ErrorCode,
  InvalidRequestError,
  KmsEnvelopeError,
  MalformedCiphertextError,
  UnknownKeyIdError,
} from "../../../src/errors.js";
import { toCallFailure } from "../../../src/server/error-status.js";

// Record<ErrorCode, …> makes this list exhaustive: a new code does not compile until its status
// is decided here too.
const EXPECTED: Record<ErrorCode, status> = {
  DECRYPTION_FAILED: status.INVALID_ARGUMENT,
  MALFORMED_CIPHERTEXT: status.INVALID_ARGUMENT,
  KEY_ID_MISMATCH: status.INVALID_ARGUMENT,
  INVALID_REQUEST: status.INVALID_ARGUMENT,
  UNKNOWN_KEY_ID: status.NOT_FOUND,
  KEY_RETIRED: status.NOT_FOUND,
  UNKNOWN_SERVICE: status.NOT_FOUND,
  PROVIDER_UNAVAILABLE: status.UNAVAILABLE,
  ENCRYPTION_SUSPENDED: status.UNAVAILABLE,
  INVALID_MASTER_KEY: status.FAILED_PRECONDITION,
  MISSING_MASTER_KEY: status.FAILED_PRECONDITION,
  INVALID_CONFIG: status.FAILED_PRECONDITION,
  UNMAPPED_RESOURCE: status.INVALID_ARGUMENT,
  SOCKET_IN_USE: status.INTERNAL,
  SOCKET_PATH_NOT_SOCKET: status.INTERNAL,
  DAEMON_UNREACHABLE: status.UNAVAILABLE,
  OVERLOADED: status.RESOURCE_EXHAUSTED,
  METHOD_NOT_FOUND: status.UNIMPLEMENTED,
  UNSUPPORTED_ENCODING: status.UNIMPLEMENTED,
  REQUEST_TOO_LARGE: status.RESOURCE_EXHAUSTED,
  CALL_TIMEOUT: status.DEADLINE_EXCEEDED,
  KMS_PLUGIN_FAILED: status.UNAVAILABLE,
  STORE_UNAVAILABLE: status.UNAVAILABLE,
  STORE_CONFLICT: status.ABORTED,
  STORE_MISSING: status.FAILED_PRECONDITION,
  RECORD_NOT_FOUND: status.NOT_FOUND,
  PLAINTEXT_CREDENTIAL: status.FAILED_PRECONDITION,
};

const GENERIC_INTERNAL = "internal error: see the daemon log";

describe("toCallFailure", () => {
  for (const [code, expected] of Object.entries(EXPECTED) as [ErrorCode, status][]) {
    test(`${code} maps to ${status[expected]} with its message and is not unexpected`, () => {
      const failure = toCallFailure(new KmsEnvelopeError(code, `message for ${code}`));
      assert.deepEqual(failure, {
        code: expected,
        details: `message for ${code}`,
        unexpected: false,
      });
    });
  }

  test("the error subclasses map through their code (SPEC §4 Decrypt rules)", () => {
    assert.equal(toCallFailure(new DecryptionFailedError()).code, status.INVALID_ARGUMENT);
    assert.equal(toCallFailure(new MalformedCiphertextError("x")).code, status.INVALID_ARGUMENT);
    assert.equal(toCallFailure(new InvalidRequestError("x")).code, status.INVALID_ARGUMENT);
    assert.equal(toCallFailure(new UnknownKeyIdError("local:x")).code, status.NOT_FOUND);
    assert.equal(toCallFailure(new ProviderError("user", "revoked")).code, status.UNAVAILABLE);
  });

  test("an unknown error is INTERNAL with a generic message that leaks nothing", () => {
    const secret = "plaintext=hunter2 key=c2VjcmV0";
    const error = new TypeError(secret);
    error.stack = `TypeError: ${secret}\n    at somewhere`;
    const failure = toCallFailure(error);
    assert.deepEqual(failure, {
      code: status.INTERNAL,
      details: GENERIC_INTERNAL,
      unexpected: true,
    });
  });

  test("thrown non-Error values are INTERNAL with the same generic message", () => {
    for (const thrown of ["a string with hunter2", 42, undefined, null, { message: "hunter2" }]) {
      const failure = toCallFailure(thrown);
      assert.equal(failure.code, status.INTERNAL);
      assert.equal(failure.details, GENERIC_INTERNAL);
      assert.equal(failure.unexpected, true);
    }
  });

  test("an error that merely looks like ours (a code property) is still INTERNAL", () => {
    const impostor = Object.assign(new Error("hunter2"), { code: "DECRYPTION_FAILED" });
    assert.deepEqual(toCallFailure(impostor), {
      code: status.INTERNAL,
      details: GENERIC_INTERNAL,
      unexpected: true,
    });
  });
});
