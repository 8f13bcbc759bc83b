// Field-service load client, run as its own process so it does not share an event loop with
// the bench driver: seals, then opens, batches of records (N fields × M bytes each) with a
// fixed number of calls in flight for a bounded time per phase, verifies every opened value
// against its original, and prints one JSON line.
//
//   node --import tsx bench/field-load.ts --socket /tmp/x/kms.sock [--duration 10s]
//     [--concurrency 16] [--batches 1,10,100] [--fields 10] [--value-bytes 100] [--channels 1]
import { randomBytes } from "node:crypto";
import { parseArgs } from "node:util";
import * as grpc from "@grpc/grpc-js";
import { callUnary } from "../src/wire/call-unary.js";
import type { OpenResponse__Output } from "../src/wire/generated/kms_envelope/field/v1/OpenResponse.js";
import type { PlainRecord__Output } from "../src/wire/generated/kms_envelope/field/v1/PlainRecord.js";
import type { SealedRecord__Output } from "../src/wire/generated/kms_envelope/field/v1/SealedRecord.js";
import type { SealResponse__Output } from "../src/wire/generated/kms_envelope/field/v1/SealResponse.js";
import { services } from "../src/wire/protos.js";

type PlainWire = PlainRecord__Output;
type SealResponse = SealResponse__Output;
type OpenResponse = OpenResponse__Output;

/** Result of one phase (one operation at one batch size). */
export interface FieldPhaseResult {
  op: "seal" | "open";
  batchRecords: number;
  concurrency: number;
  calls: number;
  records: number;
  fields: number;
  errors: number;
  mismatches: number;
  elapsedS: number;
  callsPerS: number;
  recordsPerS: number;
  fieldsPerS: number;
  p50Us: number;
  p99Us: number;
  clientCpuS: number;
  firstError?: string;
}

/** The one JSON line this script prints. */
export interface FieldLoadReport {
  concurrency: number;
  channels: number;
  fieldsPerRecord: number;
  valueBytes: number;
  durationMs: number;
  results: FieldPhaseResult[];
  errors: number;
}

const POOL_SIZE = 32;
const CALL_DEADLINE_MS = 30_000;
const RESOURCE = "benchrecords.bench.kms-envelope.io";

function parseDurationMs(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$/.exec(text);
  if (match === null) throw new Error(`cannot parse duration ${JSON.stringify(text)}`);
  const unit = match[2] ?? "s";
  return Math.round(Number(match[1]) * (unit === "ms" ? 1 : unit === "m" ? 60_000 : 1000));
}

function percentileUs(sortedNs: number[], p: number): number {
  if (sortedNs.length === 0) return 0;
  const index = Math.max(0, Math.ceil(p * sortedNs.length) - 1);
  return Math.round((sortedNs[index] as number) / 100) / 10;
}

function round1(value: number): number {
  return Math.round(value * 10) / 10;
}

function makeBatch(
  batchIndex: number,
  records: number,
  fields: number,
  valueBytes: number,
): PlainWire[] {
  return Array.from({ length: records }, (_, recordIndex) => {
    const values: Record<string, Buffer> = {};
    for (let field = 0; field < fields; field++) values[`field_${field}`] = randomBytes(valueBytes);
    return {
      workspace: `tenant-${(batchIndex + recordIndex) % 4}`,
      resource: RESOURCE,
      record_id: `rec-${records}-${batchIndex}-${recordIndex}`,
      fields: values,
    };
  });
}

/** Checks a SealResponse against the request; returns a reason when it is wrong. */
function checkSealed(plain: PlainWire[], answer: SealResponse): string | undefined {
  if (answer.records.length !== plain.length) return "Seal returned a different record count";
  const prefix = `kmse:v1:${answer.key_id}:`;
  for (let index = 0; index < plain.length; index++) {
    const sent = plain[index] as PlainWire;
    const got = answer.records[index] as SealedRecord__Output;
    if (got.record_id !== sent.record_id || got.workspace !== sent.workspace) {
      return "Seal returned records in another order or identity";
    }
    const names = Object.keys(sent.fields);
    if (Object.keys(got.fields).length !== names.length) return "Seal dropped or added fields";
    for (const name of names) {
      if (!got.fields[name]?.startsWith(prefix)) return `Seal value of ${name} is not ${prefix}…`;
    }
  }
  return undefined;
}

/** Counts opened values that differ from the originals (missing ones count as different). */
function countMismatches(plain: PlainWire[], answer: OpenResponse): number {
  let mismatches = 0;
  for (let index = 0; index < plain.length; index++) {
    const sent = plain[index] as PlainWire;
    const got = answer.records[index];
    for (const [name, value] of Object.entries(sent.fields)) {
      const opened = got?.fields[name];
      if (opened === undefined || !value.equals(opened)) mismatches++;
    }
  }
  return mismatches;
}

async function runPhase(options: {
  op: "seal" | "open";
  clients: grpc.Client[];
  plainPool: PlainWire[][];
  sealedPool: (SealedRecord__Output[] | undefined)[];
  concurrency: number;
  durationMs: number;
}): Promise<FieldPhaseResult> {
  const { op, clients, plainPool, sealedPool, concurrency, durationMs } = options;
  const batchRecords = plainPool[0]?.length ?? 0;
  const fieldsPerRecord = Object.keys(plainPool[0]?.[0]?.fields ?? {}).length;
  const latencies: number[] = [];
  let calls = 0;
  let okCalls = 0;
  let errors = 0;
  let mismatches = 0;
  let firstError: string | undefined;
  let next = 0;
  const fail = (reason: string): void => {
    errors++;
    firstError ??= reason;
  };

  const cpuBefore = process.cpuUsage();
  const started = process.hrtime.bigint();
  const end = Date.now() + durationMs;
  const worker = async (workerIndex: number): Promise<void> => {
    const client = clients[workerIndex % clients.length] as grpc.Client;
    while (Date.now() < end) {
      const poolIndex = next++ % plainPool.length;
      const plain = plainPool[poolIndex] as PlainWire[];
      const t0 = process.hrtime.bigint();
      calls++;
      try {
        if (op === "seal") {
          const answer = await callUnary<SealResponse>(
            client,
            "Seal",
            { records: plain, uid: `bench-${workerIndex}` },
            { deadline: Date.now() + CALL_DEADLINE_MS },
          );
          latencies.push(Number(process.hrtime.bigint() - t0));
          const problem = checkSealed(plain, answer);
          if (problem !== undefined) fail(problem);
          else {
            okCalls++;
            sealedPool[poolIndex] ??= answer.records;
          }
        } else {
          const sealed = sealedPool[poolIndex];
          if (sealed === undefined) throw new Error(`no sealed batch for pool entry ${poolIndex}`);
          const answer = await callUnary<OpenResponse>(
            client,
            "Open",
            { records: sealed, uid: `bench-${workerIndex}` },
            { deadline: Date.now() + CALL_DEADLINE_MS },
          );
          latencies.push(Number(process.hrtime.bigint() - t0));
          const differing = countMismatches(plain, answer);
          if (answer.records.length !== plain.length)
            fail("Open returned a different record count");
          else if (differing > 0) {
            mismatches += differing;
            fail(`${differing} opened values differ from the originals`);
          } else okCalls++;
        }
      } catch (error) {
        fail(error instanceof Error ? error.message : String(error));
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, (_, index) => worker(index)));
  const elapsedS = Number(process.hrtime.bigint() - started) / 1e9;
  const cpu = process.cpuUsage(cpuBefore);
  latencies.sort((a, b) => a - b);
  const records = okCalls * batchRecords;
  return {
    op,
    batchRecords,
    concurrency,
    calls,
    records,
    fields: records * fieldsPerRecord,
    errors,
    mismatches,
    elapsedS: Math.round(elapsedS * 1000) / 1000,
    callsPerS: round1(calls / elapsedS),
    recordsPerS: round1(records / elapsedS),
    fieldsPerS: round1((records * fieldsPerRecord) / elapsedS),
    p50Us: percentileUs(latencies, 0.5),
    p99Us: percentileUs(latencies, 0.99),
    clientCpuS: Math.round((cpu.user + cpu.system) / 1e3) / 1e3,
    ...(firstError === undefined ? {} : { firstError }),
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      socket: { type: "string" },
      duration: { type: "string", default: "10s" },
      warmup: { type: "string", default: "2s" },
      concurrency: { type: "string", default: "16" },
      batches: { type: "string", default: "1,10,100" },
      fields: { type: "string", default: "10" },
      "value-bytes": { type: "string", default: "100" },
      channels: { type: "string", default: "1" },
    },
  });
  if (values.socket === undefined) throw new Error("--socket is required");
  const durationMs = parseDurationMs(values.duration);
  const warmupMs = parseDurationMs(values.warmup);
  const concurrency = Number(values.concurrency);
  const fields = Number(values.fields);
  const valueBytes = Number(values["value-bytes"]);
  const channels = Number(values.channels);
  const batches = values.batches.split(",").map((entry) => Number(entry.trim()));

  // A local subchannel pool per client gives each its own connection; otherwise grpc-js
  // shares one connection between clients with identical options.
  const clients = Array.from(
    { length: channels },
    () =>
      new services.field(`unix:${values.socket}`, grpc.credentials.createInsecure(), {
        "grpc.default_authority": "localhost",
        "grpc.use_local_subchannel_pool": 1,
        "grpc.max_receive_message_length": 64 * 1024 * 1024,
        "grpc.max_send_message_length": 64 * 1024 * 1024,
      }),
  );

  const results: FieldPhaseResult[] = [];
  try {
    if (warmupMs > 0) {
      const warmPool = Array.from({ length: 4 }, (_, index) =>
        makeBatch(index, 10, fields, valueBytes),
      );
      const warmSealed: (SealedRecord__Output[] | undefined)[] = [];
      const half = Math.max(1, Math.round(warmupMs / 2));
      const base = { clients, plainPool: warmPool, sealedPool: warmSealed, concurrency };
      await runPhase({ ...base, op: "seal", durationMs: half });
      await runPhase({ ...base, op: "open", durationMs: half });
    }
    for (const batchRecords of batches) {
      const plainPool = Array.from({ length: POOL_SIZE }, (_, index) =>
        makeBatch(index, batchRecords, fields, valueBytes),
      );
      const sealedPool: (SealedRecord__Output[] | undefined)[] = [];
      const base = { clients, plainPool, sealedPool, concurrency, durationMs };
      results.push(await runPhase({ ...base, op: "seal" }));
      // Every pool entry needs a sealed form before Open; short Seal phases may not reach all.
      for (let index = 0; index < POOL_SIZE; index++) {
        if (sealedPool[index] !== undefined) continue;
        const answer = await callUnary<SealResponse>(
          clients[0] as grpc.Client,
          "Seal",
          { records: plainPool[index], uid: "bench-fill" },
          { deadline: Date.now() + CALL_DEADLINE_MS },
        );
        sealedPool[index] = answer.records;
      }
      results.push(await runPhase({ ...base, op: "open" }));
    }
  } finally {
    for (const client of clients) client.close();
  }
  const report: FieldLoadReport = {
    concurrency,
    channels,
    fieldsPerRecord: fields,
    valueBytes,
    durationMs,
    results,
    errors: results.reduce((sum, result) => sum + result.errors, 0),
  };
  process.stdout.write(`${JSON.stringify(report)}\n`);
  if (report.errors > 0) process.exitCode = 1;
}

main().catch((error: unknown) => {
  process.stderr.write(
    `field-load: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exitCode = 2;
});
