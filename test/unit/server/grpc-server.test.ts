import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import * as http2 from "node:http2";
import { connect as connectSocket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { afterEach, beforeEach, describe, test } from "node:test";
import { status } from "@grpc/grpc-js";
import { createLogger } from "../../../src/ops/logger.js";
import { DaemonMetrics } from "../../../src/ops/metrics.js";
import { frameMessage } from "../../../src/server/grpc-framing.js";
import { GrpcServer, type ServerLimits } from "../../../src/server/grpc-server.js";
import { services } from "../../../src/wire/protos.js";

// The server under test runs in this process on a temporary socket, driven by a raw HTTP/2
// client that can do what grpc-js never would: leave bodies unfinished, send them slowly,
// hold connections idle, ignore limits.

const KiB = 1024;
const MiB = 1024 * KiB;
const ENCRYPT = "/v2.KeyManagementService/Encrypt";
const STATUS = "/v2.KeyManagementService/Status";
const DECRYPT = "/v2.KeyManagementService/Decrypt";

const DEFAULT_LIMITS: ServerLimits = {
  maxRequestBytes: 4 * MiB,
  maxConnectionBufferBytes: 16 * MiB,
  maxBufferBytes: 64 * MiB,
  maxStreamsPerConnection: 100,
  maxConnections: 64,
  callTimeoutMs: 30_000,
  idleTimeoutMs: 300_000,
};

interface Rig {
  server: GrpcServer;
  metrics: DaemonMetrics;
  logLines: () => Record<string, unknown>[];
  socketPath: string;
}

let directory: string;
let rig: Rig | undefined;
const sessions: http2.ClientHttp2Session[] = [];

beforeEach(async () => {
  directory = await mkdtemp(join(tmpdir(), "kms-envelope-grpc-"));
});

afterEach(async () => {
  for (const session of sessions.splice(0)) session.destroy();
  await rig?.server.shutdown(0);
  rig = undefined;
  await rm(directory, { recursive: true, force: true });
});

async function startServer(limits: Partial<ServerLimits> = {}): Promise<Rig> {
  const log = new PassThrough();
  const lines: string[] = [];
  log.on("data", (chunk: Buffer) => lines.push(...chunk.toString().split("\n").filter(Boolean)));
  const metrics = new DaemonMetrics();
  const server = new GrpcServer({
    limits: { ...DEFAULT_LIMITS, ...limits },
    logger: createLogger("info", log),
    metrics,
  });
  const decoded = (request: { ciphertext: Buffer }) => Buffer.from(request.ciphertext);
  server.addService(services.kmsV2.service, {
    Status: () => ({ version: "v2", healthz: "ok", key_id: "test:key" }),
    Encrypt: (request: { plaintext: Buffer }) => ({
      ciphertext: Buffer.from(request.plaintext),
      key_id: "test:key",
      annotations: {},
    }),
    // Asynchronous, so the request's bytes must outlive the call's first tick.
    Decrypt: async (request: { ciphertext: Buffer }) => {
      await new Promise((resolve) => setTimeout(resolve, 50));
      return { plaintext: decoded(request) };
    },
  });
  const socketPath = join(directory, "grpc.sock");
  await server.listen(socketPath);
  rig = {
    server,
    metrics,
    socketPath,
    logLines: () => lines.map((line) => JSON.parse(line) as Record<string, unknown>),
  };
  return rig;
}

function connect(socketPath: string): http2.ClientHttp2Session {
  const session = http2.connect("http://localhost", {
    createConnection: () => connectSocket(socketPath),
  });
  session.on("error", () => undefined);
  sessions.push(session);
  return session;
}

function openCall(session: http2.ClientHttp2Session, path: string): http2.ClientHttp2Stream {
  const stream = session.request({
    ":method": "POST",
    ":path": path,
    "content-type": "application/grpc",
    te: "trailers",
  });
  stream.on("error", () => undefined);
  return stream;
}

interface Answer {
  code: number;
  message: string;
  body: Buffer;
}

/** Waits for the call's status (from Trailers-Only headers or trailers) and its body. */
function answerOf(stream: http2.ClientHttp2Stream): Promise<Answer> {
  return new Promise((resolve, reject) => {
    let headers: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    stream.on("response", (received) => {
      headers = received;
    });
    stream.on("trailers", (trailers) => {
      headers = { ...headers, ...trailers };
    });
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("close", () => {
      const code = headers["grpc-status"];
      if (code === undefined) {
        reject(new Error(`no grpc-status (stream reset ${stream.rstCode})`));
        return;
      }
      resolve({
        code: Number(code),
        message: decodeURIComponent(String(headers["grpc-message"] ?? "")),
        body: Buffer.concat(chunks),
      });
    });
  });
}

/** A prefix declaring `length` bytes, as the first bytes of an unfinished body. */
function prefix(length: number): Buffer {
  const bytes = Buffer.alloc(5);
  bytes.writeUInt32BE(length, 1);
  return bytes;
}

function encryptRequest(plaintext: Buffer): Buffer {
  const definition = services.kmsV2.service.Encrypt;
  assert.ok(definition !== undefined);
  return frameMessage(definition.requestSerialize({ plaintext, uid: "u" }));
}

async function unary(
  target: string | http2.ClientHttp2Session,
  path: string,
  body: Buffer,
): Promise<Answer> {
  const stream = openCall(typeof target === "string" ? connect(target) : target, path);
  stream.end(body);
  return answerOf(stream);
}

async function bufferedBytes(metrics: DaemonMetrics): Promise<number> {
  const metric = await metrics.registry.getSingleMetric("kms_envelope_buffered_bytes")?.get();
  return metric?.values[0]?.value ?? Number.NaN;
}

async function shed(metrics: DaemonMetrics, reason: string): Promise<number> {
  const metric = await metrics.registry
    .getSingleMetric("kms_envelope_connections_shed_total")
    ?.get();
  return metric?.values.find((value) => value.labels.reason === reason)?.value ?? 0;
}

async function eventually(check: () => Promise<boolean> | boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function closed(session: http2.ClientHttp2Session): Promise<void> {
  return new Promise((resolve) => {
    if (session.closed || session.destroyed) resolve();
    else session.once("close", () => resolve());
  });
}

describe("GrpcServer: memory stays bounded whatever a client sends", () => {
  test("unfinished calls past the connection budget are RESOURCE_EXHAUSTED, other connections are served, and closing releases every byte", async () => {
    const { socketPath, metrics } = await startServer({ maxConnectionBufferBytes: MiB });
    const hostile = connect(socketPath);
    const answers: Promise<Answer>[] = [];
    for (let index = 0; index < 8; index += 1) {
      const stream = openCall(hostile, ENCRYPT);
      answers.push(answerOf(stream));
      stream.write(prefix(2 * MiB));
      stream.write(Buffer.alloc(200 * KiB, 1));
    }
    const refused = await Promise.race(answers);
    assert.equal(refused.code, status.RESOURCE_EXHAUSTED);
    assert.match(refused.message, /--max-connection-buffer-bytes/);
    assert.ok((await bufferedBytes(metrics)) <= MiB, "the connection holds at most its budget");

    const served = await unary(socketPath, ENCRYPT, encryptRequest(Buffer.from("seed")));
    assert.equal(served.code, status.OK, "another connection is served meanwhile");

    hostile.destroy();
    await eventually(async () => (await bufferedBytes(metrics)) === 0, "every byte released");
  });

  test("bulk calls cannot take the daemon budget's reserve: a small KMS call still gets through", async () => {
    const { socketPath, metrics } = await startServer({
      maxBufferBytes: 2 * MiB,
      maxConnectionBufferBytes: 2 * MiB,
    });
    const bulk = connect(socketPath);
    const answers: Promise<Answer>[] = [];
    for (let index = 0; index < 8; index += 1) {
      const stream = openCall(bulk, ENCRYPT);
      answers.push(answerOf(stream));
      stream.write(prefix(3 * MiB));
      stream.write(Buffer.alloc(256 * KiB, 1));
    }
    assert.equal((await Promise.race(answers)).code, status.RESOURCE_EXHAUSTED);
    assert.ok((await bufferedBytes(metrics)) <= 1.5 * MiB, "bulk stops below limit - reserve");
    const small = await unary(socketPath, ENCRYPT, encryptRequest(Buffer.alloc(32, 9)));
    assert.equal(small.code, status.OK);
  });

  test("a declared size over --max-request-bytes is refused at the prefix and the body is not read", async () => {
    const { socketPath, metrics } = await startServer({ maxRequestBytes: 64 * KiB });
    const stream = openCall(connect(socketPath), ENCRYPT);
    const answer = answerOf(stream);
    stream.write(prefix(10 * MiB));
    for (let index = 0; index < 16; index += 1) stream.write(Buffer.alloc(64 * KiB));
    const { code, message } = await answer;
    assert.equal(code, status.RESOURCE_EXHAUSTED);
    assert.match(message, /larger than the 65536 bytes allowed \(--max-request-bytes\)/);
    assert.equal(await bufferedBytes(metrics), 0);
  });

  test("an asynchronous handler reads its request intact: bytes are zeroed only after it answered", async () => {
    const { socketPath } = await startServer();
    const definition = services.kmsV2.service.Decrypt;
    assert.ok(definition !== undefined);
    const ciphertext = Buffer.from("ciphertext bytes");
    const request = frameMessage(
      definition.requestSerialize({ ciphertext, key_id: "k", uid: "u", annotations: {} }),
    );
    const answer = await unary(socketPath, DECRYPT, request);
    assert.equal(answer.code, status.OK);
    const decoded = definition.responseDeserialize(answer.body.subarray(5)) as {
      plaintext: Buffer;
    };
    assert.deepEqual(decoded.plaintext, ciphertext);
  });
});

describe("GrpcServer: nothing is held for long", () => {
  test("a call whose body never ends is cut at --call-timeout with DEADLINE_EXCEEDED and its bytes released", async () => {
    const { socketPath, metrics } = await startServer({ callTimeoutMs: 300 });
    const stream = openCall(connect(socketPath), ENCRYPT);
    const answer = answerOf(stream);
    stream.write(prefix(MiB));
    stream.write(Buffer.alloc(100 * KiB));
    const { code, message } = await answer;
    assert.equal(code, status.DEADLINE_EXCEEDED);
    assert.match(message, /did not complete within 300 ms \(--call-timeout\)/);
    await eventually(async () => (await bufferedBytes(metrics)) === 0, "bytes released");
  });

  test("a connection with no call open is closed after --idle-timeout; a busy one is not", async () => {
    const { socketPath } = await startServer({ idleTimeoutMs: 300 });
    const idle = connect(socketPath);
    await new Promise((resolve) => idle.once("connect", resolve));
    const busy = connect(socketPath);
    const stream = openCall(busy, ENCRYPT);
    stream.write(prefix(10));
    await closed(idle);
    assert.equal(busy.closed || busy.destroyed, false);
    stream.end(Buffer.alloc(10));
  });

  test("past --max-connections the longest-idle connection is closed and the newcomer served", async () => {
    const { socketPath, metrics } = await startServer({ maxConnections: 2 });
    const status0 = () => frameMessage(new Uint8Array(0));
    const first = connect(socketPath);
    assert.equal((await unary(first, STATUS, status0())).code, status.OK);
    const second = connect(socketPath);
    assert.equal((await unary(second, STATUS, status0())).code, status.OK);
    const third = connect(socketPath);
    assert.equal((await unary(third, STATUS, status0())).code, status.OK, "the newcomer is served");
    await closed(first);
    assert.equal(second.closed || second.destroyed, false);
    assert.equal(await shed(metrics, "evicted_idle"), 1);
  });

  test("when every connection has a call open, a newcomer is refused and the busy ones kept", async () => {
    const { socketPath, metrics } = await startServer({ maxConnections: 2 });
    const busy = [connect(socketPath), connect(socketPath)];
    const streams = busy.map((session) => {
      const stream = openCall(session, ENCRYPT);
      stream.write(prefix(10));
      return stream;
    });
    await eventually(async () => (await bufferedBytes(metrics)) === 20, "both calls open");
    const newcomer = connect(socketPath);
    await closed(newcomer);
    assert.equal(await shed(metrics, "max_connections"), 1);
    for (const session of busy) assert.equal(session.closed || session.destroyed, false);
    for (const stream of streams) stream.end(Buffer.alloc(10));
  });
});

describe("GrpcServer: shutdown ends whatever peers do", () => {
  test("idle connections are closed at once and stuck calls are cut at the timeout", async () => {
    const { server, socketPath } = await startServer();
    const idlePeers = [connect(socketPath), connect(socketPath), connect(socketPath)];
    await Promise.all(idlePeers.map((session) => new Promise((r) => session.once("connect", r))));
    const stuck = connect(socketPath);
    const stream = openCall(stuck, ENCRYPT);
    stream.write(prefix(100));
    await new Promise((resolve) => setTimeout(resolve, 50));
    await server.shutdown(300);
    await Promise.all([...idlePeers, stuck].map(closed));
    rig = undefined;
  });
});

describe("GrpcServer: a call the peer gives up is cancelled, not refused", () => {
  for (const how of ["resets the stream", "drops the connection"]) {
    test(`an unfinished call whose peer ${how} counts as CANCELLED and logs no refusal`, async () => {
      const { server, socketPath, metrics, logLines } = await startServer();
      const session = connect(socketPath);
      const stream = openCall(session, ENCRYPT);
      stream.write(prefix(100));
      await eventually(async () => (await bufferedBytes(metrics)) === 100, "the call is open");
      if (how === "resets the stream") stream.destroy();
      else session.destroy();
      await eventually(async () => (await bufferedBytes(metrics)) === 0, "bytes released");
      await server.shutdown(0);
      rig = undefined;
      const counted = await metrics.registry
        .getSingleMetric("kms_envelope_grpc_requests_total")
        ?.get();
      assert.deepEqual(
        counted?.values.map((value) => value.labels.code),
        ["CANCELLED"],
      );
      assert.equal(logLines().filter((line) => line.msg === "call refused").length, 0);
    });
  }
});

describe("GrpcServer: refusals cannot fill the disk", () => {
  test("repeated refusals are logged a few times per window with a count; metrics keep every call", async () => {
    const { server, socketPath, metrics, logLines } = await startServer();
    const session = connect(socketPath);
    const calls = Array.from({ length: 60 }, () => {
      const stream = openCall(session, "/no.such.Service/Method");
      stream.end(frameMessage(new Uint8Array(0)));
      return answerOf(stream);
    });
    for (const answer of await Promise.all(calls)) assert.equal(answer.code, status.UNIMPLEMENTED);
    await server.shutdown(0);
    rig = undefined;
    const refusals = logLines().filter((line) => line.msg === "call refused");
    assert.equal(refusals.length, 5);
    const summary = logLines().find((line) => line.suppressed !== undefined);
    assert.equal(summary?.suppressed, 55);
    assert.equal(summary?.grpcCode, "UNIMPLEMENTED");
    const counted = await metrics.registry
      .getSingleMetric("kms_envelope_grpc_requests_total")
      ?.get();
    const unimplemented = counted?.values.find((value) => value.labels.code === "UNIMPLEMENTED");
    assert.equal(unimplemented?.value, 60);
  });
});
