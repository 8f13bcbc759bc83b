// Field-service load for the workers phase (bench/field-workers.ts), run as its own process:
// Seal, then Open, batches of records with a fixed number of calls in flight for a bounded time
// each. Kept light so the daemon has the cores: requests are serialized and framed once and
// sent on a bare node:http2 session (grpc-js costs the client a core's worth more), answers
// are counted as bytes, and only the first answer of each operation is decoded and checked.
//
//   node --import tsx bench/field-workers-load.ts --socket /tmp/x/kms.sock --duration 4s
//     [--concurrency 2] [--records 100] [--fields 10] [--value-bytes 100]
import { randomBytes } from "node:crypto";
import * as http2 from "node:http2";
import { connect } from "node:net";
import { parseArgs } from "node:util";
import { FRAME_HEADER_BYTES, frameMessage } from "../src/server/grpc-framing.js";
import type { SealResponse__Output } from "../src/wire/generated/kms_envelope/field/v1/SealResponse.js";
import { services } from "../src/wire/protos.js";
import { parseDurationMs } from "./lib.js";

/** One operation's result. */
export interface WorkersLoadPhase {
  op: "seal" | "open";
  calls: number;
  fields: number;
  errors: number;
  elapsedS: number;
  fieldsPerS: number;
  clientCpuS: number;
  firstError?: string;
}

const { values } = parseArgs({
  options: {
    socket: { type: "string" },
    duration: { type: "string", default: "4s" },
    concurrency: { type: "string", default: "2" },
    records: { type: "string", default: "100" },
    fields: { type: "string", default: "10" },
    "value-bytes": { type: "string", default: "100" },
  },
});
if (values.socket === undefined) throw new Error("--socket is required");
const durationMs = parseDurationMs(values.duration);
const concurrency = Number(values.concurrency);
const recordCount = Number(values.records);
const fieldCount = Number(values.fields);
const valueBytes = Number(values["value-bytes"]);

const field = services.field.service;
const plain = Array.from({ length: recordCount }, (_, index) => ({
  workspace: `tenant-${index % 4}`,
  resource: "benchrecords.bench.kms-envelope.io",
  record_id: `rec-${index}`,
  fields: Object.fromEntries(
    Array.from({ length: fieldCount }, (_, f) => [`field_${f}`, randomBytes(valueBytes)]),
  ),
}));
const socketPath = values.socket;
const session = http2.connect("http://localhost", { createConnection: () => connect(socketPath) });

/** One gRPC call with a framed request; the answer's message bytes, or the status as an error. */
function rawCall(path: string, framed: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const stream = session.request({
      ":method": "POST",
      ":path": path,
      "content-type": "application/grpc",
      te: "trailers",
    });
    const chunks: Buffer[] = [];
    let status: string | undefined;
    let detail: string | undefined;
    const note = (headers: http2.IncomingHttpHeaders) => {
      status ??= headers["grpc-status"] as string | undefined;
      detail ??= headers["grpc-message"] as string | undefined;
    };
    stream.on("response", note);
    stream.on("trailers", note);
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("error", reject);
    stream.on("close", () => {
      if (status !== "0") reject(new Error(`grpc-status ${status}: ${detail ?? ""}`));
      else resolve(Buffer.concat(chunks).subarray(FRAME_HEADER_BYTES));
    });
    stream.end(framed);
  });
}

async function phase(
  op: "seal" | "open",
  path: string,
  body: Buffer,
  ms: number,
): Promise<WorkersLoadPhase> {
  let calls = 0;
  let errors = 0;
  let firstError: string | undefined;
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  const end = started + ms;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) {
        try {
          await rawCall(path, body);
          calls++;
        } catch (error) {
          errors++;
          firstError ??= error instanceof Error ? error.message : String(error);
        }
      }
    }),
  );
  const elapsedS = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  const fields = calls * recordCount * fieldCount;
  return {
    op,
    calls,
    fields,
    errors,
    elapsedS: Math.round(elapsedS * 100) / 100,
    fieldsPerS: Math.round(fields / elapsedS),
    clientCpuS: Math.round(((cpu.user + cpu.system) / 1e6) * 100) / 100,
    firstError,
  };
}

const sealBody = frameMessage(field.Seal.requestSerialize({ records: plain, uid: "bench" }));
const sealed = field.Seal.responseDeserialize(
  await rawCall(field.Seal.path, sealBody),
) as SealResponse__Output;
if (sealed.records.length !== recordCount) throw new Error("Seal answered another record count");
const openBody = frameMessage(
  field.Open.requestSerialize({ records: sealed.records, uid: "bench" }),
);
const opened = field.Open.responseDeserialize(await rawCall(field.Open.path, openBody)) as {
  records: { fields: Record<string, Buffer> }[];
};
for (const [index, record] of plain.entries())
  for (const [name, value] of Object.entries(record.fields))
    if (!opened.records[index]?.fields[name]?.equals(value))
      throw new Error(`Open answered a different value for record ${index} ${name}`);

const results = [
  await phase("seal", field.Seal.path, sealBody, durationMs),
  await phase("open", field.Open.path, openBody, durationMs),
];
session.close();
console.log(JSON.stringify({ concurrency, records: recordCount, fields: fieldCount, results }));
process.exitCode = results.some((result) => result.errors > 0) ? 1 : 0;
