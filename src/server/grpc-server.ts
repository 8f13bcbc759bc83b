import * as http2 from "node:http2";
import { type MethodDefinition, type ServiceDefinition, status } from "@grpc/grpc-js";
import type { Logger } from "../ops/logger.js";
import type { DaemonMetrics } from "../ops/metrics.js";
import { toCallFailure } from "./error-status.js";
import {
  CallRejection,
  declaredLength,
  encodeGrpcMessage,
  FRAME_HEADER_BYTES,
  frameMessage,
  unframeSingleMessage,
} from "./grpc-framing.js";

/** A unary method: request in, response out, synchronously; failures are thrown. */
export type UnaryHandler = (request: never) => object;

/** The response side of a server-streaming call. */
export interface ResponseStream {
  write(message: object): void;
  end(): void;
  /** Runs once when the call ends for any reason (client cancel, end(), shutdown). */
  onClose(listener: () => void): void;
}

/** A server-streaming method. */
export type StreamHandler = (request: never, stream: ResponseStream) => void;

/** Handlers of one service, by the method names of its proto. */
export type ServiceHandlers = Record<string, UnaryHandler | StreamHandler>;

interface RegisteredMethod {
  definition: MethodDefinition<object, object>;
  handler: UnaryHandler | StreamHandler;
}

const STATUS_NAMES = Object.fromEntries(
  Object.entries(status).map(([name, value]) => [value, name]),
) as Record<number, string>;
const CONTENT_TYPE = "application/grpc";
// Bounds what one connection may buffer; generous enough for 64 concurrent 1 MiB calls.
const MAX_SESSION_MEMORY_MB = 256;

// The uid is the apiserver's correlation id; cap it so a hostile client cannot bloat logs.
function correlationId(request: object | undefined): string | undefined {
  const uid = (request as { uid?: unknown } | undefined)?.uid;
  return typeof uid === "string" && uid !== "" ? uid.slice(0, 128) : undefined;
}

function isOpen(stream: http2.ServerHttp2Stream): boolean {
  return !stream.destroyed && !stream.closed;
}

function sendMessageHeaders(stream: http2.ServerHttp2Stream): void {
  stream.respond({ ":status": 200, "content-type": CONTENT_TYPE }, { waitForTrailers: true });
  stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
}

/** Answers with a status and no message ("Trailers-Only" in gRPC over HTTP/2). */
function sendStatusOnly(stream: http2.ServerHttp2Stream, code: status, message: string): void {
  if (!isOpen(stream) || stream.headersSent) return;
  stream.respond(
    {
      ":status": 200,
      "content-type": CONTENT_TYPE,
      "grpc-status": String(code),
      "grpc-message": encodeGrpcMessage(message),
    },
    { endStream: true },
  );
}

/**
 * A lean gRPC server on node:http2 for the daemon's socket: unary and server-streaming calls,
 * identity encoding only. The grpc-js server costs ~100 µs of CPU per call on this machine
 * (an echo service tops out near 9,000 calls/s, bench/results/floor.md), which alone would
 * keep the daemon under its 10,000 calls/s floor; node:http2 directly costs about half.
 * Clients (tests, `status`, the engine) still use grpc-js, so interop is tested both ways, and
 * the Go client in bench/ (kmsload) checks it against grpc-go.
 */
export class GrpcServer {
  readonly #methods = new Map<string, RegisteredMethod>();
  readonly #sessions = new Set<http2.ServerHttp2Session>();
  readonly #server: http2.Http2Server;
  readonly #maxReceiveBytes: number;
  readonly #logger: Logger;
  readonly #metrics: DaemonMetrics;

  constructor(options: { maxReceiveBytes: number; logger: Logger; metrics: DaemonMetrics }) {
    this.#maxReceiveBytes = options.maxReceiveBytes;
    this.#logger = options.logger;
    this.#metrics = options.metrics;
    this.#server = http2.createServer({
      maxSessionMemory: MAX_SESSION_MEMORY_MB,
      settings: { maxConcurrentStreams: 1000 },
    });
    this.#server.on("session", (session) => {
      this.#sessions.add(session);
      session.on("close", () => this.#sessions.delete(session));
      // A peer that breaks the connection mid-call is not a daemon fault; the stream is gone.
      session.on("error", (error) =>
        this.#logger.debug({ err: error }, "client connection failed"),
      );
    });
    this.#server.on("stream", (stream, headers) => this.#onStream(stream, headers));
  }

  /** Serves every method of a proto-loader service definition with the given handlers. */
  addService(definition: ServiceDefinition, handlers: ServiceHandlers): void {
    for (const [name, method] of Object.entries(definition)) {
      const handler = handlers[name];
      if (handler === undefined) throw new Error(`no handler for ${method.path}`);
      this.#methods.set(method.path, {
        definition: method as MethodDefinition<object, object>,
        handler,
      });
    }
  }

  /** Listens on a socket path; the file is created with mode 0600 (the umask is tightened). */
  listen(socketPath: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const previousUmask = process.umask(0o177);
      const onError = (error: Error): void => {
        process.umask(previousUmask);
        reject(error);
      };
      this.#server.once("error", onError);
      this.#server.listen(socketPath, () => {
        process.umask(previousUmask);
        this.#server.off("error", onError);
        this.#server.on("error", (error) =>
          this.#logger.error({ err: error }, "socket server failed"),
        );
        resolve();
      });
    });
  }

  /**
   * Stops accepting connections, sends GOAWAY so clients open no new calls, lets calls in
   * flight finish, and after `timeoutMs` cuts whatever is left. Resolves when all is closed.
   */
  shutdown(timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const deadline = setTimeout(() => {
        this.#logger.warn({ timeoutMs }, "drain timed out; cancelling remaining calls");
        for (const session of this.#sessions) session.destroy();
      }, timeoutMs);
      this.#server.close(() => {
        clearTimeout(deadline);
        resolve();
      });
      for (const session of this.#sessions) session.close();
    });
  }

  #onStream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
    // A client that resets its call leaves nothing to answer; without a listener it would throw.
    stream.on("error", () => undefined);
    const started = process.hrtime.bigint();
    const contentType = headers["content-type"];
    if (
      headers[":method"] !== "POST" ||
      typeof contentType !== "string" ||
      !contentType.startsWith(CONTENT_TYPE)
    ) {
      // Not gRPC at all: plain HTTP answers, as the gRPC spec asks (415 for a wrong type).
      if (isOpen(stream))
        stream.respond(
          { ":status": headers[":method"] === "POST" ? 415 : 405 },
          { endStream: true },
        );
      return;
    }
    const path = headers[":path"] ?? "";
    const method = this.#methods.get(path);
    if (method === undefined) {
      this.#finish(
        stream,
        "unknown",
        started,
        undefined,
        new CallRejection(status.UNIMPLEMENTED, `unknown method ${path.slice(0, 128)}`),
      );
      return;
    }
    const chunks: Buffer[] = [];
    let received = 0;
    let expected: number | undefined;
    let refused = false;
    stream.on("data", (chunk: Buffer) => {
      if (refused) return;
      received += chunk.length;
      chunks.push(chunk);
      // The prefix declares the message length: refuse an oversized call before buffering it.
      expected ??= declaredLength(chunks.length === 1 ? chunk : Buffer.concat(chunks));
      if (
        (expected ?? 0) > this.#maxReceiveBytes ||
        received > this.#maxReceiveBytes + FRAME_HEADER_BYTES
      ) {
        refused = true;
        chunks.length = 0;
        const rejection = new CallRejection(
          status.RESOURCE_EXHAUSTED,
          `request larger than the ${this.#maxReceiveBytes} bytes allowed (--max-request-bytes)`,
        );
        this.#finish(stream, path, started, undefined, rejection);
      }
    });
    stream.on("end", () => {
      if (!refused)
        this.#dispatch(
          stream,
          path,
          method,
          chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, received),
          started,
        );
    });
  }

  #dispatch(
    stream: http2.ServerHttp2Stream,
    path: string,
    method: RegisteredMethod,
    body: Buffer,
    started: bigint,
  ): void {
    let request: object | undefined;
    try {
      const message = unframeSingleMessage(body);
      try {
        request = method.definition.requestDeserialize(message);
      } catch {
        throw new CallRejection(
          status.INVALID_ARGUMENT,
          "request is not a valid protobuf message for this method",
        );
      }
      if (method.definition.responseStream) {
        (method.handler as (request: object, stream: ResponseStream) => void)(
          request,
          this.#responseStream(stream, method.definition),
        );
        this.#metrics.observeCall(path, "OK", Number(process.hrtime.bigint() - started) / 1e9);
        return;
      }
      const response = (method.handler as (request: object) => object)(request);
      const bytes = method.definition.responseSerialize(response);
      if (isOpen(stream)) {
        sendMessageHeaders(stream);
        stream.end(frameMessage(bytes));
      }
      this.#finish(stream, path, started, request, undefined);
    } catch (error) {
      this.#finish(stream, path, started, request, error);
    }
  }

  /** Answers a failure (when there is one), then records the call in metrics and logs. */
  #finish(
    stream: http2.ServerHttp2Stream,
    path: string,
    started: bigint,
    request: object | undefined,
    error: unknown,
  ): void {
    let code = status.OK;
    if (error !== undefined) {
      const failure =
        error instanceof CallRejection
          ? { code: error.code, details: error.message, unexpected: false }
          : toCallFailure(error);
      code = failure.code;
      sendStatusOnly(stream, failure.code, failure.details);
      const fields = {
        method: path,
        uid: correlationId(request),
        grpcCode: STATUS_NAMES[failure.code],
      };
      if (failure.unexpected)
        this.#logger.error({ ...fields, err: error }, "call failed unexpectedly");
      else this.#logger.warn({ ...fields, reason: failure.details }, "call refused");
    } else if (this.#logger.isLevelEnabled("debug")) {
      this.#logger.debug({ method: path, uid: correlationId(request) }, "call served");
    }
    this.#metrics.observeCall(
      path,
      STATUS_NAMES[code] ?? "UNKNOWN",
      Number(process.hrtime.bigint() - started) / 1e9,
    );
  }

  #responseStream(
    stream: http2.ServerHttp2Stream,
    definition: MethodDefinition<object, object>,
  ): ResponseStream {
    return {
      write: (message) => {
        if (!isOpen(stream)) return;
        if (!stream.headersSent) sendMessageHeaders(stream);
        stream.write(frameMessage(definition.responseSerialize(message)));
      },
      end: () => {
        if (!isOpen(stream)) return;
        if (stream.headersSent) stream.end();
        else sendStatusOnly(stream, status.OK, "");
      },
      onClose: (listener) => {
        stream.once("close", listener);
      },
    };
  }
}
