import { KmsEnvelopeError } from "../src/errors.js";

const MASTER_KEY_BYTES = 32;
const STANDARD_BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * Decodes one base64 master key, insisting on exactly 32 bytes. The error names where the key
 * came from and never echoes the value.
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
