// The attacker of the abuse benchmark (bench/abuse.ts). It runs as its own process so that its
// event loop, busy with thousands of tiny writes, never delays the code that measures the
// daemon. One scenario per run, bounded by --duration (and by --max-bytes or --calls); prints
// one JSON line saying what the attacker saw.
//
//   node --import tsx bench/abuse-client.ts --socket /tmp/x/kms.sock --scenario slow-body
//     [--duration 15s] [--connections 4] [--streams 100] [--declared-bytes N] [--max-bytes N]
//     [--calls 100000] [--records 10000] [--fields 10] [--value-bytes 16]
//
// Scenarios (issue 11): slow-body (KMS Encrypt streams that declare a large message and send it
// one byte per HTTP/2 DATA frame, never ending), bulk (the same with full frames), idle
// (connections opened and left idle), field-batches (maximum-size field-service Seal calls
// back to back, grpc-js), flood (calls to a method the daemon does not serve).
import type * as http2 from "node:http2";
import { parseArgs } from "node:util";
import * as grpc from "@grpc/grpc-js";
import { services } from "../src/wire/protos.js";
import { type AttackReport, SCENARIOS, type Scenario, STATUS_NAMES, Tally } from "./abuse-tally.js";
import { parseDurationMs } from "./lib.js";

const KMS_ENCRYPT = "/v2.KeyManagementService/Encrypt";
const UNKNOWN_METHOD = "/kms_envelope.abuse.v1.Nobody/Home";
const BULK_CHUNK = Buffer.alloc(16 * 1024, 0x61);
const ONE_BYTE = Buffer.from([0x61]);

interface Options {
  socket: string;
  deadline: number;
  connections: number;
  streams: number;
  declaredBytes: number;
  maxBytes: number;
  calls: number;
  records: number;
  fields: number;
  valueBytes: number;
}

function lengthPrefix(declaredBytes: number): Buffer {
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(declaredBytes, 1);
  return prefix;
}

function nextTick(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * The session of every stream to run: `streams` on each of the `connections`, plus one stream
 * with the same write pattern on a witness connection whose DATA frames are counted.
 */
async function streamLanes(tally: Tally, options: Options): Promise<http2.ClientHttp2Session[]> {
  const [witness, ...sessions] = await Promise.all([
    tally.connect(options.socket, true),
    ...Array.from({ length: options.connections }, () => tally.connect(options.socket, false)),
  ]);
  return [witness, ...sessions.flatMap((session) => Array(options.streams).fill(session))].filter(
    (session) => session !== undefined,
  );
}

/**
 * Every stream gets at most one byte per event-loop turn, and only once its previous byte has
 * left, so node:http2 never has two bytes of a stream queued to put in one frame: each byte is
 * its own DATA frame (the frame counter shows it). Refused streams are replaced.
 */
async function slowBody(tally: Tally, options: Options): Promise<void> {
  const prefix = lengthPrefix(options.declaredBytes);
  const slots = (await streamLanes(tally, options)).map((session) => ({
    session,
    stream: undefined as http2.ClientHttp2Stream | undefined,
    sent: 0,
  }));
  while (Date.now() < options.deadline && tally.bytesSent < options.maxBytes) {
    for (const slot of slots) {
      if (slot.stream === undefined || slot.stream.closed || slot.stream.destroyed) {
        slot.stream = tally.call(slot.session, KMS_ENCRYPT)?.stream;
        slot.sent = 0;
      }
      const stream = slot.stream;
      if (stream === undefined || stream.writableLength > 0) continue;
      if (slot.sent >= options.declaredBytes + prefix.length - 1) continue;
      stream.write(
        slot.sent < prefix.length ? prefix.subarray(slot.sent, slot.sent + 1) : ONE_BYTE,
      );
      slot.sent += 1;
      tally.bytesSent += 1;
    }
    await nextTick();
  }
}

/** Streams that send all but the last byte of their message in full frames; refused ones are replaced. */
async function bulk(tally: Tally, options: Options): Promise<void> {
  const lanes = await streamLanes(tally, options);
  const running = (): boolean =>
    Date.now() < options.deadline && tally.bytesSent < options.maxBytes;
  const fill = async (session: http2.ClientHttp2Session): Promise<void> => {
    while (running()) {
      const call = tally.call(session, KMS_ENCRYPT);
      if (call === undefined) return;
      const { stream, closed } = call;
      let left = options.declaredBytes - 1;
      stream.write(lengthPrefix(options.declaredBytes));
      tally.bytesSent += 5;
      while (left > 0 && running() && !stream.closed) {
        const chunk = left < BULK_CHUNK.length ? BULK_CHUNK.subarray(0, left) : BULK_CHUNK;
        left -= chunk.length;
        tally.bytesSent += chunk.length;
        if (!stream.write(chunk)) {
          await Promise.race([closed, waitDrain(stream), untilDeadline(options.deadline)]);
        }
      }
      await Promise.race([closed, untilDeadline(options.deadline)]);
    }
  };
  await Promise.all(lanes.map(fill));
}

function waitDrain(stream: http2.ClientHttp2Stream): Promise<void> {
  return new Promise((resolve) => stream.once("drain", resolve));
}

function untilDeadline(deadline: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, deadline - Date.now())).unref());
}

/** Connections that only say hello, then wait; the daemon decides how many it keeps. */
async function idle(tally: Tally, options: Options): Promise<void> {
  await Promise.all(
    Array.from({ length: options.connections }, () => tally.connect(options.socket, false)),
  );
  await untilDeadline(options.deadline);
}

/** Calls the daemon does not serve, `streams` in flight per connection, until --calls were made. */
async function flood(tally: Tally, options: Options): Promise<void> {
  const lanes = await streamLanes(tally, options);
  const emptyMessage = lengthPrefix(0);
  const caller = async (session: http2.ClientHttp2Session): Promise<void> => {
    while (tally.calls < options.calls && Date.now() < options.deadline) {
      const call = tally.call(session, UNKNOWN_METHOD);
      if (call === undefined) return;
      call.stream.end(emptyMessage);
      tally.bytesSent += emptyMessage.length;
      await call.closed;
    }
  };
  await Promise.all(lanes.map(caller));
}

/**
 * The largest Seal the daemon accepts by default (10,000 records × 10 fields), encoded once
 * and sent as raw bytes with the answers left undecoded, so the attacker's CPU goes into
 * sending rather than into protobuf: one grpc-js channel (connection) per call in flight.
 */
async function fieldBatches(
  tally: Tally,
  options: Options,
): Promise<Pick<AttackReport, "okLatencyMs" | "requestBytes">> {
  const seal = (services.field.service as grpc.ServiceDefinition).Seal as grpc.MethodDefinition<
    object,
    object
  >;
  const value = Buffer.alloc(options.valueBytes, 0x62);
  const request = seal.requestSerialize({
    uid: "abuse-field-batches",
    records: Array.from({ length: options.records }, (_, index) => ({
      workspace: "abuse",
      resource: "benchrecords.bench.kms-envelope.io",
      record_id: `r${index}`,
      fields: Object.fromEntries(
        Array.from({ length: options.fields }, (_, field) => [`f${field}`, value]),
      ),
    })),
  });
  // A local subchannel pool gives each client its own connection; a sealed batch is over
  // grpc-js's default 4 MiB answer limit.
  const channelOptions = {
    "grpc.use_local_subchannel_pool": 1,
    "grpc.max_receive_message_length": -1,
  };
  const clients = Array.from(
    { length: options.connections },
    () =>
      new grpc.Client(`unix:${options.socket}`, grpc.credentials.createInsecure(), channelOptions),
  );
  const okMs: number[] = [];
  const raw = (bytes: Buffer): Buffer => bytes;
  const caller = async (client: grpc.Client): Promise<void> => {
    while (Date.now() < options.deadline) {
      tally.calls += 1;
      tally.bytesSent += request.length;
      const started = performance.now();
      const code = await new Promise<grpc.status>((resolve) =>
        client.makeUnaryRequest(
          seal.path,
          raw,
          raw,
          request,
          // The attacker is gone at the deadline: calls still running are cancelled then.
          { deadline: options.deadline },
          (error) => resolve(error?.code ?? grpc.status.OK),
        ),
      );
      if (code === grpc.status.OK) okMs.push(performance.now() - started);
      if (code === grpc.status.DEADLINE_EXCEEDED && Date.now() >= options.deadline) {
        tally.count("open at end");
      } else tally.count(STATUS_NAMES[code] ?? `status ${code}`);
    }
  };
  try {
    await Promise.all(clients.map(caller));
  } finally {
    for (const client of clients) client.close();
  }
  okMs.sort((a, b) => a - b);
  const at = (p: number): number =>
    Math.round(okMs[Math.max(0, Math.ceil(p * okMs.length) - 1)] ?? 0);
  return {
    ...(okMs.length === 0 ? {} : { okLatencyMs: { p50: at(0.5), p99: at(0.99), max: at(1) } }),
    requestBytes: request.length,
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      socket: { type: "string" },
      scenario: { type: "string" },
      duration: { type: "string", default: "15s" },
      connections: { type: "string", default: "1" },
      streams: { type: "string", default: "1" },
      "declared-bytes": { type: "string", default: String(4 * 1024 * 1024 - 1024) },
      "max-bytes": { type: "string", default: String(2 * 1024 ** 3) },
      calls: { type: "string", default: "100000" },
      records: { type: "string", default: "10000" },
      fields: { type: "string", default: "10" },
      "value-bytes": { type: "string", default: "16" },
    },
  });
  const scenario = values.scenario as Scenario;
  if (values.socket === undefined) throw new Error("--socket is required");
  if (!SCENARIOS.includes(scenario))
    throw new Error(`--scenario is one of ${SCENARIOS.join(", ")}`);
  const started = Date.now();
  const options: Options = {
    socket: values.socket,
    deadline: started + parseDurationMs(values.duration),
    connections: Number(values.connections),
    streams: Number(values.streams),
    declaredBytes: Number(values["declared-bytes"]),
    maxBytes: Number(values["max-bytes"]),
    calls: Number(values.calls),
    records: Number(values.records),
    fields: Number(values.fields),
    valueBytes: Number(values["value-bytes"]),
  };
  const tally = new Tally();
  let extra: Partial<AttackReport> = {};
  try {
    if (scenario === "slow-body") await slowBody(tally, options);
    else if (scenario === "bulk") await bulk(tally, options);
    else if (scenario === "idle") await idle(tally, options);
    else if (scenario === "flood") await flood(tally, options);
    else extra = await fieldBatches(tally, options);
  } finally {
    tally.end();
  }
  // Streams still open were just reset by end(); their close events count them.
  await new Promise((resolve) => setTimeout(resolve, 200));
  const report = { ...tally.report(scenario, (Date.now() - started) / 1000), ...extra };
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(
    `abuse-client: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exitCode = 2;
});
