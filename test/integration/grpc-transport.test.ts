import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import * as http2 from "node:http2";
import { describe, test } from "node:test";
import { status } from "@grpc/grpc-js";
import { services } from "../../src/wire/protos.js";
import { suiteDaemon } from "../support/daemon-process.js";

interface RawAnswer {
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders;
  body: Buffer;
}

function frame(message: Uint8Array, compressed = 0): Buffer {
  const out = Buffer.alloc(5 + message.length);
  out[0] = compressed;
  out.writeUInt32BE(message.length, 1);
  out.set(message, 5);
  return out;
}

/** Sends one HTTP/2 request over the daemon's socket, as a gRPC client would at the wire level. */
function rawRequest(
  socketPath: string,
  headers: http2.OutgoingHttpHeaders,
  body: Buffer,
): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const session = http2.connect("http://localhost", {
      path: socketPath,
    } as http2.SecureClientSessionOptions);
    session.on("error", reject);
    const request = session.request({
      ":method": "POST",
      "content-type": "application/grpc",
      te: "trailers",
      ...headers,
    });
    let answerHeaders: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    request.on("response", (received) => (answerHeaders = received));
    request.on("trailers", (received) => (trailers = received));
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      session.close();
      resolve({ headers: answerHeaders, trailers, body: Buffer.concat(chunks) });
    });
    request.on("error", reject);
    // A GET is sent with END_STREAM already set, so it takes no body.
    if (headers[":method"] === "GET") request.end();
    else request.end(body);
  });
}

/** grpc-status and grpc-message, from trailers or from a Trailers-Only answer's headers. */
function grpcStatus(answer: RawAnswer): { code: number; message: string } {
  const source = answer.trailers["grpc-status"] !== undefined ? answer.trailers : answer.headers;
  return {
    code: Number(source["grpc-status"]),
    message: decodeURIComponent(String(source["grpc-message"] ?? "")),
  };
}

describe("gRPC over HTTP/2 at the wire level", () => {
  const suite = suiteDaemon();
  const encryptPath = "/v2.KeyManagementService/Encrypt";
  const encrypt = services.kmsV2.service.Encrypt;

  test("a well-formed call gets 200, application/grpc, one framed message and grpc-status 0 in trailers", async () => {
    assert.ok(encrypt !== undefined);
    const answer = await rawRequest(
      suite.daemon.socketPath,
      { ":path": encryptPath },
      frame(encrypt.requestSerialize({ plaintext: randomBytes(32), uid: "raw" })),
    );
    assert.equal(answer.headers[":status"], 200);
    assert.equal(answer.headers["content-type"], "application/grpc");
    assert.equal(answer.trailers["grpc-status"], "0");
    assert.equal(answer.body[0], 0, "not compressed");
    assert.equal(answer.body.readUInt32BE(1), answer.body.length - 5);
    const decoded = encrypt.responseDeserialize(answer.body.subarray(5)) as { key_id: string };
    assert.equal(decoded.key_id, suite.daemon.keyId);
  });

  test("an unknown method is UNIMPLEMENTED", async () => {
    const answer = await rawRequest(
      suite.daemon.socketPath,
      { ":path": "/v2.KeyManagementService/Explode" },
      frame(Buffer.alloc(0)),
    );
    assert.deepEqual(grpcStatus(answer), {
      code: status.UNIMPLEMENTED,
      message: "unknown method /v2.KeyManagementService/Explode",
    });
  });

  test("a compressed message is UNIMPLEMENTED, naming identity encoding", async () => {
    const answer = await rawRequest(
      suite.daemon.socketPath,
      { ":path": encryptPath, "grpc-encoding": "gzip" },
      frame(Buffer.from([1, 2, 3]), 1),
    );
    assert.equal(grpcStatus(answer).code, status.UNIMPLEMENTED);
    assert.match(grpcStatus(answer).message, /send grpc-encoding identity/);
  });

  test("a body with no message, a truncated message, or two messages is INVALID_ARGUMENT", async () => {
    const message = encrypt?.requestSerialize({ plaintext: randomBytes(32), uid: "x" }) as Buffer;
    const bodies: [Buffer, RegExp][] = [
      [Buffer.alloc(0), /carries no message/],
      [frame(message).subarray(0, 10), /not exactly one length-prefixed message/],
      [Buffer.concat([frame(message), frame(message)]), /not exactly one length-prefixed message/],
    ];
    for (const [body, detail] of bodies) {
      const answer = await rawRequest(suite.daemon.socketPath, { ":path": encryptPath }, body);
      assert.equal(grpcStatus(answer).code, status.INVALID_ARGUMENT, body.toString("hex"));
      assert.match(grpcStatus(answer).message, detail);
    }
  });

  test("a wrong content-type gets HTTP 415 and GET gets 405, as for any non-gRPC request", async () => {
    const wrongType = await rawRequest(
      suite.daemon.socketPath,
      { ":path": encryptPath, "content-type": "application/json" },
      Buffer.from("{}"),
    );
    assert.equal(wrongType.headers[":status"], 415);
    const get = await rawRequest(
      suite.daemon.socketPath,
      { ":path": encryptPath, ":method": "GET" },
      Buffer.alloc(0),
    );
    assert.equal(get.headers[":status"], 405);
  });

  test("a declared message length above --max-request-bytes is refused before the body arrives", async () => {
    const header = Buffer.alloc(5);
    header.writeUInt32BE(512 * 1024 * 1024, 1);
    const answer = await rawRequest(
      suite.daemon.socketPath,
      { ":path": encryptPath },
      Buffer.concat([header, Buffer.alloc(100)]),
    );
    assert.equal(grpcStatus(answer).code, status.RESOURCE_EXHAUSTED);
    assert.match(grpcStatus(answer).message, /--max-request-bytes/);
  });

  test("grpc-message is percent-encoded so non-ASCII details survive", async () => {
    const version = services.kmsV1.service.Encrypt;
    const body = frame(
      version?.requestSerialize({ version: "v2é%", plain: Buffer.alloc(1) }) as Buffer,
    );
    const answer = await rawRequest(
      suite.daemon.socketPath,
      { ":path": "/v1beta1.KeyManagementService/Encrypt" },
      body,
    );
    assert.match(String(answer.headers["grpc-message"]), /v2%C3%A9%25/);
    assert.equal(grpcStatus(answer).message, 'version "v2é%" is not supported: send "v1beta1"');
  });
});
