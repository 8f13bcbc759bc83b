import { randomFillSync } from "node:crypto";
import { KmsEnvelopeError } from "../errors.js";
import { STANDARD_BASE64 } from "./canonical-base64.js";

/** Size of a master key M (SPEC.md §2), and of the keys derived from it. */
export const MASTER_KEY_BYTES = 32;

/** A fresh master key from the CSPRNG, in a buffer of its own (never Node's shared pool). */
export function generateMasterKey(): Uint8Array {
  return randomFillSync(new Uint8Array(MASTER_KEY_BYTES));
}

/**
 * Decodes one base64 master key, insisting on exactly 32 bytes. The error names where the key
 * came from (`source`, e.g. the variable) and never echoes the value.
 */
export function decodeMasterKey(text: string, source: string): Uint8Array {
  const trimmed = text.trim();
  if (!STANDARD_BASE64.test(trimmed)) {
    throw new KmsEnvelopeError(
      "INVALID_MASTER_KEY",
      `${source} is not standard base64: generate one with \`kms-envelope keygen\``,
    );
  }
  const bytes = Buffer.from(trimmed, "base64");
  if (bytes.length !== MASTER_KEY_BYTES) {
    bytes.fill(0);
    throw new KmsEnvelopeError(
      "INVALID_MASTER_KEY",
      `${source} must be base64 of exactly ${MASTER_KEY_BYTES} bytes: generate one with \`kms-envelope keygen\``,
    );
  }
  // Buffer.from(text, "base64") decodes into Node's shared allocation pool; copy the key into
  // its own buffer and zero the pooled bytes, so keys live in isolated buffers (SPEC.md §2).
  const key = Uint8Array.from(bytes);
  bytes.fill(0);
  return key;
}

/**
 * The base64 text of a master key, only for handing a new key to its operator (`keygen`'s
 * output, the development key file); nothing else turns a key into a string.
 */
export function encodeMasterKey(key: Uint8Array): string {
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString("base64");
}
