// The floor the daemon's KMS v2 path is measured against: the least a correct KMS v2 server on
// node:http2 must do per call (read the gRPC frame, find the one protobuf field it needs, answer
// headers, one framed message and grpc-status trailers), with no crypto, limits, metrics or
// logging. Encrypt answers the plaintext as the "ciphertext" and Decrypt gives it back, so
// kmsload's checked roundtrip passes. Started as its own process by bench/kms-floor.ts:
//   node --import tsx bench/kms-floor-server.ts <socket path>
// and stopped with SIGTERM. Not a server to use: it encrypts nothing.
import * as http2 from "node:http2";

const KEY_ID = Buffer.from("floor:0000000000000000");
const STATUS_RESPONSE = Buffer.concat([
  field(1, Buffer.from("v2")),
  field(2, Buffer.from("ok")),
  field(3, KEY_ID),
]);

function varint(value: number): Buffer {
  const bytes: number[] = [];
  let rest = value;
  while (rest >= 0x80) {
    bytes.push((rest & 0x7f) | 0x80);
    rest >>>= 7;
  }
  bytes.push(rest);
  return Buffer.from(bytes);
}

/** A length-delimited protobuf field (wire type 2). */
function field(number: number, value: Buffer): Buffer {
  return Buffer.concat([varint((number << 3) | 2), varint(value.length), value]);
}

/** The bytes of length-delimited field `wanted` in a protobuf message (empty when absent). */
function bytesField(message: Buffer, wanted: number): Buffer {
  let offset = 0;
  while (offset < message.length) {
    let tag = 0;
    let shift = 0;
    for (;;) {
      const byte = message[offset++] ?? 0;
      tag |= (byte & 0x7f) << shift;
      shift += 7;
      if (byte < 0x80) break;
    }
    if ((tag & 7) === 0) {
      while ((message[offset++] ?? 0) >= 0x80);
      continue;
    }
    let length = 0;
    shift = 0;
    for (;;) {
      const byte = message[offset++] ?? 0;
      length |= (byte & 0x7f) << shift;
      shift += 7;
      if (byte < 0x80) break;
    }
    if (tag >>> 3 === wanted) return message.subarray(offset, offset + length);
    offset += length;
  }
  return Buffer.alloc(0);
}

function framed(message: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + message.length);
  out[0] = 0;
  out.writeUInt32BE(message.length, 1);
  message.copy(out, 5);
  return out;
}

function answer(path: string | undefined, request: Buffer): Buffer | undefined {
  switch (path) {
    case "/v2.KeyManagementService/Encrypt":
      return Buffer.concat([field(1, bytesField(request, 1)), field(2, KEY_ID)]);
    case "/v2.KeyManagementService/Decrypt":
      return field(1, bytesField(request, 1));
    case "/v2.KeyManagementService/Status":
      return STATUS_RESPONSE;
    default:
      return undefined;
  }
}

const server = http2.createServer();
server.on("stream", (stream, headers) => {
  stream.on("error", () => undefined);
  const chunks: Buffer[] = [];
  stream.on("data", (chunk: Buffer) => chunks.push(chunk));
  stream.on("end", () => {
    const body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks);
    const response = answer(headers[":path"], body.subarray(5));
    if (response === undefined) {
      stream.respond(
        { ":status": 200, "content-type": "application/grpc", "grpc-status": "12" },
        { endStream: true },
      );
      return;
    }
    stream.respond(
      { ":status": 200, "content-type": "application/grpc" },
      { waitForTrailers: true },
    );
    stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
    stream.end(framed(response));
  });
});

const socketPath = process.argv[2];
if (socketPath === undefined) {
  process.stderr.write("usage: kms-floor-server.ts <socket path>\n");
  process.exit(2);
}
server.listen(socketPath, () => process.stdout.write("listening\n"));
process.once("SIGTERM", () => {
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
});
