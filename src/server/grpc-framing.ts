/** gRPC message prefix: 1 byte compressed flag, 4 bytes big-endian length (gRPC over HTTP/2). */
export const FRAME_HEADER_BYTES = 5;

/** Wraps one serialized message in its length prefix (never compressed). */
export function frameMessage(message: Uint8Array): Buffer {
  const framed = Buffer.allocUnsafe(FRAME_HEADER_BYTES + message.length);
  framed[0] = 0;
  framed.writeUInt32BE(message.length, 1);
  framed.set(message, FRAME_HEADER_BYTES);
  return framed;
}

/**
 * grpc-message is percent-encoded: bytes outside printable ASCII, and '%' itself, become %XX
 * of their UTF-8 bytes (gRPC over HTTP/2, "Responses").
 */
export function encodeGrpcMessage(text: string): string {
  let encoded = "";
  for (const byte of Buffer.from(text, "utf8")) {
    encoded +=
      byte >= 0x20 && byte <= 0x7e && byte !== 0x25
        ? String.fromCharCode(byte)
        : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return encoded;
}
