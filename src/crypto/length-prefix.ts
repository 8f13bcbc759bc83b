import { MalformedCiphertextError } from "../errors.js";

const MAX_LENGTH = 0xffff;

/** `lp(x)` of SPEC.md §2: 2-byte big-endian length of the UTF-8 bytes of x, then the bytes. */
export function lengthPrefixed(text: string): Buffer {
  const body = Buffer.from(text, "utf8");
  if (body.length > MAX_LENGTH) {
    throw new RangeError(`value of ${body.length} bytes does not fit a 2-byte length prefix`);
  }
  const out = Buffer.allocUnsafe(2 + body.length);
  out.writeUInt16BE(body.length, 0);
  body.copy(out, 2);
  return out;
}

/** Reads one `lp(x)` at `offset`; returns the text and the offset just past it. */
export function readLengthPrefixed(
  bytes: Uint8Array,
  offset: number,
): { text: string; next: number } {
  if (bytes.length < offset + 2) {
    throw new MalformedCiphertextError("truncated length prefix");
  }
  const length = ((bytes[offset] as number) << 8) | (bytes[offset + 1] as number);
  const next = offset + 2 + length;
  if (bytes.length < next) {
    throw new MalformedCiphertextError("length prefix runs past the end");
  }
  const text = Buffer.from(bytes.buffer, bytes.byteOffset + offset + 2, length).toString("utf8");
  return { text, next };
}
