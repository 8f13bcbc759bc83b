import { InvalidRequestError } from "../errors.js";

// Names end up inside length prefixes (≤ 65535 bytes); far smaller caps catch misuse early.
const MAX_NAME_BYTES = 1024;

/**
 * Refuses an empty or oversized name (workspace, resource, record id, field) of a field-service
 * request; `path` says where it is in the request (`records[3].workspace`).
 */
export function checkName(value: string, path: string): void {
  if (value === "") throw new InvalidRequestError(`${path} is required`);
  if (Buffer.byteLength(value) > MAX_NAME_BYTES) {
    throw new InvalidRequestError(`${path} is longer than ${MAX_NAME_BYTES} bytes`);
  }
}
