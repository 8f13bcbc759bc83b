import * as http2 from "node:http2";
import type { Socket } from "node:net";
import { type MethodDefinition, type ServiceDefinition, status } from "@grpc/grpc-js";
import { InvalidRequestError, KmsEnvelopeError } from "../errors.js";
import { LogThrottle } from "../ops/log-throttle.js";
import type { Logger } from "../ops/logger.js";
import type { DaemonMetrics } from "../ops/metrics.js";
import { statusName } from "../wire/unary-connection.js";
import { toCallFailure } from "./error-status.js";
import { encodeGrpcMessage, frameMessage } from "./grpc-framing.js";
import { MemoryBudget } from "./memory-budget.js";
import { RequestBody, type RequestBodyLimits } from "./request-body.js";

/** A unary method: request in, response out; failures are thrown (or rejected). */
type UnaryHandler = (request: never) => object | Promise<object>;

/** The response side of a server-streaming call. */
export interface ResponseStream {
  write(message: object): void;
  end(): void;
  /** Runs once when the call ends for any reason (client cancel, end(), shutdown). */
  onClose(listener: () => void): void;
}

/** A server-streaming method. */
type StreamHandler = (request: never, stream: ResponseStream) => void;

/** What a raw handler answers: the serialized response, or the failure, and the call's uid. */
export interface RawOutcome {
  response?: Uint8Array;
  error?: unknown;
  uid?: string;
}

/**
 * A unary method that takes the serialized request and answers serialized bytes, so that
 * decoding, work and encoding can all happen off the event loop (a worker thread).
 */
export interface RawHandler {
  readonly raw: (message: Buffer) => Promise<RawOutcome>;
}

/** Handlers of one service, by the method names of its proto. */
export type ServiceHandlers = Record<string, UnaryHandler | StreamHandler | RawHandler>;

/** What one client may make the daemon hold, and for how long (documented as serve flags). */
export interface ServerLimits {
  /** Largest request message (--max-request-bytes). */
  readonly maxRequestBytes: number;
  /** Request and response bytes one connection may hold at once. */
  readonly maxConnectionBufferBytes: number;
  /** Request and response bytes all connections together may hold at once. */
  readonly maxBufferBytes: number;
  /** Calls one connection may have open at once (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS). */
  readonly maxStreamsPerConnection: number;
  /** Connections open at once; past it the longest-idle one is closed (or, if none, the new one). */
  readonly maxConnections: number;
  /** Longest a unary call may take, from its first byte to its last response byte. */
  readonly callTimeoutMs: number;
  /** A connection with no call open for this long is closed (GOAWAY). */
  readonly idleTimeoutMs: number;
}

interface RegisteredMethod {
  definition: MethodDefinition<object, object>;
  handler: UnaryHandler | StreamHandler | RawHandler;
}

interface Connection {
  readonly session: http2.ServerHttp2Session;
  readonly budget: MemoryBudget;
  /** What each of its calls' request bodies may use (one object for all of them). */
  readonly bodyLimits: RequestBodyLimits;
  openCalls: number;
  /** When the last call ended (ms, monotonic), while no call is open. */
  idleSince: number;
}

/** One call's state, kept until its stream closes. */
interface Call {
  readonly stream: http2.ServerHttp2Stream;
  readonly path: string;
  /** performance.now() when the call arrived. */
  readonly started: number;
  readonly connection: Connection;
  /** What the path names; undefined for a method not served. */
  readonly method: RegisteredMethod | undefined;
  readonly body: RequestBody;
  /** Monotonic ms after which a unary call is cut; Infinity once a stream handler owns it. */
  deadline: number;
  /** Response bytes counted in the connection's budget until the stream closes. */
  responseBytes: number;
  /** True while a handler may still read the request bytes, which must not be zeroed yet. */
  inHandler: boolean;
  answered: boolean;
}

const CONTENT_TYPE = "application/grpc";
// The same header blocks for every answer, and listeners shared by every call: at 10,000+
// calls/s, objects and closures made per call are a visible share of the daemon's CPU (GC).
const MESSAGE_HEADERS = Object.freeze({ ":status": 200, "content-type": CONTENT_TYPE });
const OK_TRAILERS = Object.freeze({ "grpc-status": "0" });
const RESPOND_WITH_TRAILERS = Object.freeze({ waitForTrailers: true });
const CALL = Symbol("call");

/** A stream carrying its call, so that one listener function serves every stream. */
type CallStream = http2.ServerHttp2Stream & { [CALL]?: Call };

function ignore(): void {}

function sendOkTrailers(this: http2.ServerHttp2Stream): void {
  this.sendTrailers(OK_TRAILERS);
}

function elapsedSeconds(call: Call): number {
  return (performance.now() - call.started) / 1000;
}
// nghttp2's own buffers per connection; request and response bytes are bounded by the budgets.
const MAX_SESSION_MEMORY_MB = 32;
// The budget's share kept for small (KMS) calls, so bulk batches never crowd kube-apiserver out.
const SMALL_CALL_RESERVE_BYTES = 8 * 1024 * 1024;
// Deadlines and idle connections are checked by one sweep rather than a timer per call,
// which would cost more than the KMS calls themselves at 10,000 calls/s.
const SWEEP_INTERVAL_MS = 250;

// The uid is the apiserver's correlation id; cap it so a hostile client cannot bloat logs.
function correlationId(request: object | undefined): string | undefined {
  const uid = (request as { uid?: unknown } | undefined)?.uid;
  return typeof uid === "string" && uid !== "" ? uid.slice(0, 128) : undefined;
}

function isOpen(stream: http2.ServerHttp2Stream): boolean {
  return !stream.destroyed && !stream.closed;
}

function isRaw(handler: RegisteredMethod["handler"]): handler is RawHandler {
  return typeof handler === "object";
}

function sendMessageHeaders(stream: http2.ServerHttp2Stream): void {
  stream.respond(MESSAGE_HEADERS, RESPOND_WITH_TRAILERS);
  stream.once("wantTrailers", sendOkTrailers);
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
 *
 * The daemon sits on kube-apiserver's critical path, so no client may make it hold unbounded
 * memory or time: requests accumulate into one buffer each, counted against a per-connection
 * and a daemon-wide budget; calls and idle connections have deadlines; past any limit the
 * call is refused with RESOURCE_EXHAUSTED (or cut) and everyone else is still served.
 */
export class GrpcServer {
  readonly #methods = new Map<string, RegisteredMethod>();
  readonly #connections = new Map<http2.ServerHttp2Session, Connection>();
  readonly #sockets = new Set<Socket>();
  readonly #calls = new Set<Call>();
  readonly #server: http2.Http2Server;
  readonly #limits: ServerLimits;
  readonly #budget: MemoryBudget;
  readonly #logger: Logger;
  readonly #throttle: LogThrottle;
  readonly #metrics: DaemonMetrics;
  #sweep: NodeJS.Timeout | undefined;
  readonly #onData: (this: CallStream, chunk: Buffer) => void;
  readonly #onEnd: (this: CallStream) => void;
  readonly #onClose: (this: CallStream) => void;

  constructor(options: { limits: ServerLimits; logger: Logger; metrics: DaemonMetrics }) {
    this.#limits = options.limits;
    this.#logger = options.logger;
    this.#throttle = new LogThrottle(options.logger);
    this.#metrics = options.metrics;
    this.#budget = new MemoryBudget(this.#limits.maxBufferBytes, {
      smallReserve: Math.min(SMALL_CALL_RESERVE_BYTES, this.#limits.maxBufferBytes / 4),
    });
    this.#metrics.observeBufferedBytes(() => this.#budget.used);
    this.#server = http2.createServer({
      maxSessionMemory: MAX_SESSION_MEMORY_MB,
      settings: { maxConcurrentStreams: this.#limits.maxStreamsPerConnection },
    });
    this.#server.on("connection", (socket: Socket) => {
      this.#sockets.add(socket);
      socket.once("close", () => this.#sockets.delete(socket));
    });
    const server = this;
    this.#onData = function (chunk) {
      const call = this[CALL] as Call;
      if (call.answered) return;
      try {
        call.body.append(chunk);
      } catch (error) {
        server.#refuse(call, error);
      }
    };
    this.#onEnd = function () {
      const call = this[CALL] as Call;
      // A reset stream ends its readable side too; that call was given up, not sent whole.
      if (!call.answered && !this.aborted) server.#dispatch(call, call.method as RegisteredMethod);
    };
    this.#onClose = function () {
      server.#onCallClosed(this[CALL] as Call);
    };
    this.#server.on("session", (session) => this.#onSession(session));
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
        this.#sweep = setInterval(() => this.#enforceDeadlines(), SWEEP_INTERVAL_MS).unref();
        resolve();
      });
    });
  }

  /**
   * Stops accepting connections, sends GOAWAY so clients open no new calls, lets calls in
   * flight finish, and after `timeoutMs` destroys every connection whatever its peer does.
   * Resolves when every connection is gone.
   */
  shutdown(timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const deadline = setTimeout(() => {
        if (this.#sockets.size > 0) {
          this.#logger.warn(
            { timeoutMs, connections: this.#sockets.size },
            "drain timed out; closing the remaining connections",
          );
        }
        for (const { session } of this.#connections.values()) session.destroy();
        for (const socket of this.#sockets) socket.destroy();
      }, timeoutMs);
      this.#server.close(() => {
        clearTimeout(deadline);
        clearInterval(this.#sweep);
        this.#throttle.flush();
        resolve();
      });
      // A connection with no call open has nothing to drain: close it now rather than wait
      // for a peer that may never hang up; busy ones get GOAWAY and close when their calls end.
      for (const connection of this.#connections.values()) {
        if (connection.openCalls === 0) connection.session.destroy();
        else connection.session.close();
      }
    });
  }

  #onSession(session: http2.ServerHttp2Session): void {
    const budget = new MemoryBudget(this.#limits.maxConnectionBufferBytes, {
      parent: this.#budget,
    });
    const connection: Connection = {
      session,
      budget,
      bodyLimits: { maxMessageBytes: this.#limits.maxRequestBytes, budget },
      openCalls: 0,
      idleSince: performance.now(),
    };
    this.#connections.set(session, connection);
    session.on("close", () => this.#connections.delete(session));
    if (this.#connections.size > this.#limits.maxConnections) this.#makeRoom(connection);
    // A peer that breaks the connection mid-call is not a daemon fault; the stream is gone.
    session.on("error", (error) => this.#logger.debug({ err: error }, "client connection failed"));
  }

  /**
   * Past --max-connections, the connection idle the longest is closed to make room: peers that
   * merely hold connections open cannot lock a reconnecting kube-apiserver out. Only when every
   * other connection has a call open is the newcomer refused.
   */
  #makeRoom(newcomer: Connection): void {
    let victim = newcomer;
    for (const connection of this.#connections.values())
      if (connection.openCalls === 0 && connection.idleSince < victim.idleSince)
        victim = connection;
    const reason = victim === newcomer ? "max_connections" : "evicted_idle";
    this.#metrics.countConnectionShed(reason);
    this.#throttle.write(
      "warn",
      `connection-${reason}`,
      { maxConnections: this.#limits.maxConnections },
      victim === newcomer
        ? "connection refused: every connection has a call open (--max-connections)"
        : "closed the longest-idle connection to admit a new one (--max-connections)",
    );
    this.#connections.delete(victim.session);
    victim.session.destroy();
  }

  #onStream(stream: CallStream, headers: http2.IncomingHttpHeaders): void {
    // A client that resets its call leaves nothing to answer; without a listener it would throw.
    stream.on("error", ignore);
    const started = performance.now();
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
      stream.resume();
      return;
    }
    const connection = this.#connections.get(stream.session as http2.ServerHttp2Session);
    const path = headers[":path"] ?? "";
    const method = this.#methods.get(path);
    if (connection === undefined) {
      stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
      return;
    }
    const call: Call = {
      stream,
      path: method === undefined ? "unknown" : method.definition.path,
      method,
      started,
      connection,
      body: new RequestBody(connection.bodyLimits),
      deadline: started + this.#limits.callTimeoutMs,
      responseBytes: 0,
      inHandler: false,
      answered: false,
    };
    connection.openCalls += 1;
    this.#calls.add(call);
    stream[CALL] = call;
    stream.on("close", this.#onClose);
    if (method === undefined) {
      this.#refuse(
        call,
        new KmsEnvelopeError("METHOD_NOT_FOUND", `unknown method ${path.slice(0, 128)}`),
      );
      return;
    }
    stream.on("data", this.#onData);
    stream.on("end", this.#onEnd);
  }

  #onCallClosed(call: Call): void {
    // A call that closes unanswered was reset by its peer or lost with its connection:
    // counted as cancelled, not logged.
    if (!call.answered) {
      call.answered = true;
      this.#metrics.observeCall(call.path, "CANCELLED", elapsedSeconds(call));
    }
    this.#calls.delete(call);
    if (!call.inHandler) call.body.release();
    if (call.responseBytes > 0) call.connection.budget.release(call.responseBytes);
    call.responseBytes = 0;
    const connection = call.connection;
    connection.openCalls -= 1;
    if (connection.openCalls === 0) connection.idleSince = performance.now();
  }

  /** Refuses a call before its handler ran; the peer is told to stop sending its body. */
  #refuse(call: Call, error: unknown): void {
    this.#finish(call, undefined, error);
    if (!call.inHandler) call.body.release();
    // RST_STREAM(NO_ERROR) after the status: the client stops sending a body nobody reads.
    if (isOpen(call.stream)) call.stream.close(http2.constants.NGHTTP2_NO_ERROR);
  }

  #dispatch(call: Call, method: RegisteredMethod): void {
    let request: object | undefined;
    try {
      const message = call.body.finish();
      const handler = method.handler;
      if (isRaw(handler)) {
        call.inHandler = true;
        if (this.#logger.isLevelEnabled("debug"))
          this.#logger.debug({ method: call.path }, "call handed off the event loop");
        handler.raw(message).then(
          (outcome) => this.#answerRaw(call, outcome),
          (error: unknown) => this.#settle(call, undefined, undefined, error),
        );
        return;
      }
      try {
        request = method.definition.requestDeserialize(message);
      } catch {
        throw new InvalidRequestError("request is not a valid protobuf message for this method");
      }
      if (method.definition.responseStream) {
        call.deadline = Number.POSITIVE_INFINITY;
        call.answered = true;
        (handler as (request: object, stream: ResponseStream) => void)(
          request,
          this.#responseStream(call.stream, method.definition),
        );
        this.#metrics.observeCall(call.path, "OK", elapsedSeconds(call));
        return;
      }
      const result = (handler as (request: object) => object | Promise<object>)(request);
      if (result instanceof Promise) {
        call.inHandler = true;
        const decoded = request;
        result.then(
          (response) => this.#settle(call, decoded, method.definition.responseSerialize(response)),
          (error: unknown) => this.#settle(call, decoded, undefined, error),
        );
        return;
      }
      this.#answer(call, method.definition.responseSerialize(result));
      this.#finish(call, request, undefined);
    } catch (error) {
      this.#finish(call, request, error);
    }
  }

  #answerRaw(call: Call, outcome: RawOutcome): void {
    const request = outcome.uid === undefined ? undefined : { uid: outcome.uid };
    this.#settle(call, request, outcome.response, outcome.error);
  }

  /** Ends an asynchronous handler's call: its request bytes may be zeroed from now on. */
  #settle(
    call: Call,
    request: object | undefined,
    response: Uint8Array | undefined,
    error?: unknown,
  ): void {
    call.inHandler = false;
    if (error === undefined && response !== undefined) {
      this.#answer(call, response);
      this.#finish(call, request, undefined);
    } else {
      this.#finish(call, request, error ?? new Error("the handler gave no response"));
    }
    if (!isOpen(call.stream)) call.body.release();
  }

  #answer(call: Call, response: Uint8Array): void {
    if (!isOpen(call.stream)) return;
    // Counted until the stream closes, so a peer that never reads its answers cannot pile
    // them up in memory: the next calls are refused instead.
    call.responseBytes += response.length;
    call.connection.budget.forceReserve(response.length);
    sendMessageHeaders(call.stream);
    call.stream.end(frameMessage(response));
  }

  /** Answers a failure (when there is one), then records the call in metrics and logs. */
  #finish(call: Call, request: object | undefined, error: unknown): void {
    if (call.answered) return;
    call.answered = true;
    let code = status.OK;
    if (error !== undefined) {
      const failure = toCallFailure(error);
      code = failure.code;
      sendStatusOnly(call.stream, failure.code, failure.details);
      const grpcCode = statusName(failure.code);
      const fields = { method: call.path, uid: correlationId(request), grpcCode };
      if (failure.unexpected) {
        this.#throttle.write(
          "error",
          `unexpected|${call.path}`,
          { ...fields, err: error },
          "call failed unexpectedly",
        );
      } else {
        this.#throttle.write(
          "warn",
          `refused|${call.path}|${grpcCode}`,
          { ...fields, reason: failure.details },
          "call refused",
        );
      }
    } else if (this.#logger.isLevelEnabled("debug")) {
      this.#logger.debug({ method: call.path, uid: correlationId(request) }, "call served");
    }
    this.#metrics.observeCall(call.path, statusName(code), elapsedSeconds(call));
  }

  /** Cuts unary calls past their deadline and closes connections idle for too long. */
  #enforceDeadlines(): void {
    const now = performance.now();
    for (const call of this.#calls) {
      if (now < call.deadline) continue;
      call.deadline = Number.POSITIVE_INFINITY;
      if (!call.answered) {
        this.#refuse(
          call,
          new KmsEnvelopeError(
            "CALL_TIMEOUT",
            `the call did not complete within ${this.#limits.callTimeoutMs} ms (--call-timeout): send the request body promptly and read the answer`,
          ),
        );
      } else if (isOpen(call.stream)) {
        // Answered, but the peer has not read the answer: reset it to free the bytes.
        call.stream.close(http2.constants.NGHTTP2_CANCEL);
      }
    }
    for (const connection of this.#connections.values()) {
      if (connection.openCalls === 0 && now - connection.idleSince >= this.#limits.idleTimeoutMs) {
        connection.idleSince = Number.POSITIVE_INFINITY;
        this.#logger.debug("closing an idle client connection (--idle-timeout)");
        connection.session.close();
      }
    }
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
