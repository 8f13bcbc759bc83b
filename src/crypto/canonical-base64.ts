/** Standard, padded base64 (RFC 4648 §4) as a whole string; says nothing of padding bits. */
export const STANDARD_BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * Decodes standard, padded base64 in its one canonical spelling, or returns undefined.
 * Node's decoder silently skips bad characters and ignores non-zero padding bits; stored
 * ciphertext text is refused rather than repaired, so each value has exactly one form.
 */
export function decodeCanonicalBase64(text: string): Buffer | undefined {
  // The round trip alone refuses what the STANDARD_BASE64 pattern would (a skipped character,
  // URL-safe letters, missing padding never re-encode to the same text), and every stored field
  // is opened through here, so the pattern's scan is not paid a second time; the fuzz tests hold
  // the two to agreeing.
  const bytes = Buffer.from(text, "base64");
  return bytes.toString("base64") === text ? bytes : undefined;
}
