// What the abuse attacker (bench/abuse-client.ts) sees: connections the daemon kept or closed,
// calls by gRPC status or HTTP/2 reset code, and the DATA frames really written on the wire.
import * as http2 from "node:http2";
import { connect as netConnect, type Socket } from "node:net";
import { Duplex } from "node:stream";
import * as grpc from "@grpc/grpc-js";

/** The attacks bench/abuse-client.ts knows (issue 11's scenarios). */
export const SCENARIOS = ["slow-body", "bulk", "idle", "field-batches", "flood"] as const;
/** One of SCENARIOS. */
export type Scenario = (typeof SCENARIOS)[number];

/** The one JSON line bench/abuse-client.ts prints. */
export interface AttackReport {
  scenario: Scenario;
  elapsedS: number;
  connections: {
    attempted: number;
    /** The daemon answered with its HTTP/2 SETTINGS: the connection was kept. */
    accepted: number;
    /** Closed by the daemon before it said anything (--max-connections). */
    closedOnArrival: number;
    /** Accepted, then closed by the daemon before the attacker was done. */
    closedLater: number;
  };
  /** Calls (HTTP/2 streams) the attacker opened, and how each ended. */
  calls: number;
  /** gRPC status names; "reset CODE": ended with no status; "open at end": never answered. */
  outcomes: Record<string, number>;
  /** Request bytes written (gRPC prefixes and bodies). */
  bytesSent: number;
  /** HTTP/2 DATA frames of the witness stream, counted from its connection's bytes on the wire. */
  dataFrames: { count: number; payloadBytes: number; largestPayload: number };
  /** Seal latency of the calls the daemon answered OK (field-batches, when there were any), ms. */
  okLatencyMs?: { p50: number; p99: number; max: number };
  /** Size of one field-service request (field-batches only). */
  requestBytes?: number;
}

/** gRPC status names by code. */
export const STATUS_NAMES = Object.fromEntries(
  Object.entries(grpc.status).map(([name, value]) => [value, name]),
) as Record<number, string>;
// HTTP/2 error codes (RFC 9113 §7), by value: what a stream reset carries.
const RESET_CODES = [
  "NO_ERROR",
  "PROTOCOL_ERROR",
  "INTERNAL_ERROR",
  "FLOW_CONTROL_ERROR",
  "SETTINGS_TIMEOUT",
  "STREAM_CLOSED",
  "FRAME_SIZE_ERROR",
  "REFUSED_STREAM",
  "CANCEL",
  "COMPRESSION_ERROR",
  "CONNECT_ERROR",
  "ENHANCE_YOUR_CALM",
];
const HTTP2_PREFACE_BYTES = 24;
const FRAME_HEADER_BYTES = 9;
const DATA_FRAME = 0;

/** Parses the client side of an HTTP/2 connection just enough to count its DATA frames. */
class FrameCounter {
  count = 0;
  payloadBytes = 0;
  largestPayload = 0;
  #prefaceLeft = HTTP2_PREFACE_BYTES;
  readonly #header = Buffer.alloc(FRAME_HEADER_BYTES);
  #headerFilled = 0;
  #payloadLeft = 0;

  feed(chunk: Buffer): void {
    let offset = Math.min(this.#prefaceLeft, chunk.length);
    this.#prefaceLeft -= offset;
    while (offset < chunk.length) {
      if (this.#payloadLeft > 0) {
        const skipped = Math.min(this.#payloadLeft, chunk.length - offset);
        this.#payloadLeft -= skipped;
        offset += skipped;
        continue;
      }
      const taken = Math.min(FRAME_HEADER_BYTES - this.#headerFilled, chunk.length - offset);
      chunk.copy(this.#header, this.#headerFilled, offset, offset + taken);
      this.#headerFilled += taken;
      offset += taken;
      if (this.#headerFilled < FRAME_HEADER_BYTES) return;
      this.#headerFilled = 0;
      this.#payloadLeft = this.#header.readUIntBE(0, 3);
      if (this.#header[3] === DATA_FRAME) {
        this.count += 1;
        this.payloadBytes += this.#payloadLeft;
        this.largestPayload = Math.max(this.largestPayload, this.#payloadLeft);
      }
    }
  }
}

/**
 * A Unix socket seen through JavaScript: node:http2 writes to a plain net.Socket natively,
 * out of our sight, so this wrapper is what lets the frame counter see every byte sent.
 */
class CountedSocket extends Duplex {
  readonly #inner: Socket;
  readonly #frames: FrameCounter;

  constructor(path: string, frames: FrameCounter) {
    super();
    this.#frames = frames;
    this.#inner = netConnect(path);
    this.#inner.on("data", (chunk: Buffer) => {
      if (!this.push(chunk)) this.#inner.pause();
    });
    this.#inner.on("end", () => this.push(null));
    this.#inner.on("error", (error) => this.destroy(error));
    this.#inner.on("close", () => this.destroy());
  }

  override _read(): void {
    this.#inner.resume();
  }

  override _write(
    chunk: Buffer,
    _encoding: BufferEncoding,
    done: (error?: Error | null) => void,
  ): void {
    this.#frames.feed(chunk);
    this.#inner.write(chunk, done);
  }

  override _final(done: () => void): void {
    this.#inner.end(done);
  }

  override _destroy(error: Error | null, done: (error: Error | null) => void): void {
    this.#inner.destroy();
    done(error);
  }
}

/** What the attacker has seen so far; becomes the report. */
export class Tally {
  readonly frames = new FrameCounter();
  readonly outcomes = new Map<string, number>();
  readonly sessions = new Set<http2.ClientHttp2Session>();
  calls = 0;
  bytesSent = 0;
  attempted = 0;
  accepted = 0;
  closedOnArrival = 0;
  closedLater = 0;
  /** Set before the attacker closes everything, so its own closes are not counted as the daemon's. */
  ending = false;

  count(outcome: string): void {
    this.outcomes.set(outcome, (this.outcomes.get(outcome) ?? 0) + 1);
  }

  /**
   * Opens a connection; resolves once the daemon's SETTINGS arrived, or undefined if it hung
   * up. Only the witness connection's bytes go through the frame counter: the others write
   * natively, several times faster.
   */
  connect(socketPath: string, witness: boolean): Promise<http2.ClientHttp2Session | undefined> {
    this.attempted += 1;
    const session = http2.connect("http://localhost", {
      createConnection: () =>
        witness ? new CountedSocket(socketPath, this.frames) : netConnect(socketPath),
    });
    session.on("error", () => undefined);
    return new Promise((resolve) => {
      let settled = false;
      session.once("remoteSettings", () => {
        settled = true;
        this.accepted += 1;
        this.sessions.add(session);
        resolve(session);
      });
      session.once("close", () => {
        this.sessions.delete(session);
        if (!settled) {
          this.closedOnArrival += 1;
          resolve(undefined);
        } else if (!this.ending) this.closedLater += 1;
      });
    });
  }

  /** Starts a gRPC call on a session; the returned promise settles when its stream is gone. */
  call(
    session: http2.ClientHttp2Session,
    path: string,
  ): { stream: http2.ClientHttp2Stream; closed: Promise<void> } | undefined {
    if (session.closed || session.destroyed) return undefined;
    let stream: http2.ClientHttp2Stream;
    try {
      stream = session.request({
        ":method": "POST",
        ":path": path,
        "content-type": "application/grpc",
        te: "trailers",
      });
    } catch {
      return undefined;
    }
    this.calls += 1;
    let outcome: string | undefined;
    const record = (headers: http2.IncomingHttpHeaders): void => {
      const code = headers["grpc-status"];
      if (code !== undefined) outcome ??= STATUS_NAMES[Number(code)] ?? `status ${code}`;
    };
    stream.on("response", record);
    stream.on("trailers", record);
    stream.on("error", () => undefined);
    stream.resume();
    const closed = new Promise<void>((resolve) =>
      stream.once("close", () => {
        const reset = `reset ${RESET_CODES[stream.rstCode ?? -1] ?? stream.rstCode}`;
        this.count(outcome ?? (this.ending ? "open at end" : reset));
        resolve();
      }),
    );
    return { stream, closed };
  }

  /** Closes every connection the attacker still holds. */
  end(): void {
    this.ending = true;
    for (const session of this.sessions) session.destroy();
  }

  report(scenario: Scenario, elapsedS: number): AttackReport {
    return {
      scenario,
      elapsedS: Math.round(elapsedS * 1000) / 1000,
      connections: {
        attempted: this.attempted,
        accepted: this.accepted,
        closedOnArrival: this.closedOnArrival,
        closedLater: this.closedLater,
      },
      calls: this.calls,
      outcomes: Object.fromEntries(this.outcomes),
      bytesSent: this.bytesSent,
      dataFrames: {
        count: this.frames.count,
        payloadBytes: this.frames.payloadBytes,
        largestPayload: this.frames.largestPayload,
      },
    };
  }
}
