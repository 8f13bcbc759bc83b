import assert from "node:assert/strict";
import { KmsEnvelopeError } from "../../src/errors.js";

/**
 * For assert.throws/rejects: the error is a KmsEnvelopeError with `code`, and its message is
 * `message` exactly (a string) or matches it (a pattern); codes and messages are asserted
 * together, as STYLE.md asks.
 */
export function hasCode(code: string, message?: string | RegExp) {
  return (error: unknown): boolean => {
    assert.ok(error instanceof KmsEnvelopeError, `expected a KmsEnvelopeError, got ${error}`);
    assert.equal(error.code, code);
    if (typeof message === "string") assert.equal(error.message, message);
    else if (message !== undefined) assert.match(error.message, message);
    return true;
  };
}
