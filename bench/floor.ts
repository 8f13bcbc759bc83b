// What does the stack cost before our code runs? Starts stripped-down KMS v2 servers on
// grpc-js (each in its own process) and the real daemon, drives each with the same kmsload
// run, and tabulates calls/s and server CPU per call. kmsload only checks that Decrypt gives
// back what went into Encrypt, so echo servers are valid targets.
//
//   node --import tsx bench/floor.ts [--duration 10s] [--concurrency 64] [--conns 2]
//                                    [--variants raw-echo,proto-echo,...] [--name floor]
// Results go to bench/results/<name>.{json,md}; BENCH_DAEMON_NODE_FLAGS applies to "daemon".
//   node --import tsx bench/floor.ts --serve <variant> --socket <path>   (server side)
//
// Variants:
//   raw-echo                 grpc-js with identity (de)serializers, handler echoes the bytes
//   raw-echo-nochannelz      the same with "grpc.enable_channelz": 0
//   proto-echo               the project's proto-loader definitions (withSafeDeserializers),
//                            handler maps plaintext <-> ciphertext without crypto
//   proto-crypto             proto-echo + the project's seal/open and KMS ciphertext encoding
//   proto-fastcrypto         proto-crypto with HMAC-based HKDF and pooled nonces (fast-crypto.ts)
//   proto-fastcrypto-nochannelz
//   proto-wasmcrypto         proto-crypto with HKDF + secretbox all in libsodium's wasm (WasmSealer)
//   http2-echo               no grpc-js: node:http2 directly, gRPC unary framing by hand, echo
//   http2-fastcrypto         http2-echo + hand-coded protobuf for Encrypt/Decrypt + fast crypto
//   http2-wasmcrypto         the same with WasmSealer
//   http2-proto-crypto       node:http2 directly, but the project's proto-loader (protobufjs)
//                            (de)serializers and seal/open: "replace only the grpc-js server"
//   http2-proto-fastcrypto   the same with fast-crypto.ts
//   http2-proto-wasmcrypto   the same with WasmSealer
//   daemon                   the real daemon (dist/src/cli/main.js serve)
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import * as http2 from "node:http2";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import * as grpc from "@grpc/grpc-js";
import { KMS_V2_CONTEXT } from "../src/crypto/contexts.js";
import { decodeKmsCiphertext, encodeKmsCiphertext } from "../src/crypto/kms-ciphertext.js";
import { open, seal } from "../src/crypto/sealed.js";
import { loadSecretbox } from "../src/crypto/secretbox.js";
import { services, withSafeDeserializers } from "../src/server/protos.js";
import { fastOpen, fastSeal, WasmSealer } from "./fast-crypto.js";
import {
  DaemonProcess,
  ensureDaemonBuilt,
  ensureKmsload,
  goDuration,
  log,
  parseDurationMs,
  REPO_ROOT,
  RESULTS_DIR,
  readCpuSeconds,
  readMachineCpu,
  runKmsload,
  waitForQuiet,
} from "./lib.js";

const VARIANTS = [
  "raw-echo",
  "raw-echo-nochannelz",
  "proto-echo",
  "proto-crypto",
  "proto-fastcrypto",
  "proto-fastcrypto-nochannelz",
  "proto-wasmcrypto",
  "http2-echo",
  "http2-fastcrypto",
  "http2-wasmcrypto",
  "http2-proto-crypto",
  "http2-proto-fastcrypto",
  "http2-proto-wasmcrypto",
  "daemon",
] as const;
type Variant = (typeof VARIANTS)[number];

const KEY_ID = "local:floorfloorfloor0";

// ------------------------------------------------------------------ server side

function rawDefinition(): grpc.ServiceDefinition {
  const identity = (bytes: Buffer): Buffer => bytes;
  const method = (name: string): grpc.MethodDefinition<Buffer, Buffer> => ({
    path: `/v2.KeyManagementService/${name}`,
    requestStream: false,
    responseStream: false,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  });
  return { Encrypt: method("Encrypt"), Decrypt: method("Decrypt") };
}

// Minimal protobuf: length-delimited fields only (all KMS v2 Encrypt/Decrypt fields are).
function readVarint(bytes: Buffer, offset: number): [number, number] {
  let value = 0;
  let shift = 0;
  for (let index = offset; index < bytes.length && shift < 35; index++) {
    const byte = bytes[index] as number;
    value += (byte & 0x7f) * 2 ** shift;
    if (byte < 0x80) return [value, index + 1];
    shift += 7;
  }
  throw new Error("bad varint");
}

function bytesFields(message: Buffer): Map<number, Buffer> {
  const fields = new Map<number, Buffer>();
  let offset = 0;
  while (offset < message.length) {
    const [tag, afterTag] = readVarint(message, offset);
    if ((tag & 7) !== 2) throw new Error("unexpected wire type");
    const [length, start] = readVarint(message, afterTag);
    fields.set(tag >>> 3, message.subarray(start, start + length));
    offset = start + length;
  }
  return fields;
}

function encodeVarint(value: number): number[] {
  const out: number[] = [];
  let rest = value;
  while (rest >= 0x80) {
    out.push((rest & 0x7f) | 0x80);
    rest = Math.floor(rest / 128);
  }
  out.push(rest);
  return out;
}

/** A gRPC message frame (uncompressed) holding length-delimited fields. */
function grpcFrame(fields: [number, Uint8Array][]): Buffer {
  const parts: Buffer[] = [];
  for (const [number, value] of fields) {
    parts.push(Buffer.from([...encodeVarint((number << 3) | 2), ...encodeVarint(value.length)]));
    parts.push(Buffer.from(value.buffer, value.byteOffset, value.length));
  }
  const body = Buffer.concat(parts);
  const header = Buffer.alloc(5);
  header.writeUInt32BE(body.length, 1);
  return Buffer.concat([header, body]);
}

type SealFn = (key: Uint8Array, context: Uint8Array, data: Uint8Array) => Uint8Array;

/** The seal/open pair a variant names: current (src/crypto), fast (HMAC HKDF) or wasm. */
function cryptoOf(variant: Variant): [SealFn, SealFn] {
  if (variant.includes("wasmcrypto")) {
    const sealer = new WasmSealer();
    return [(k, c, d) => sealer.seal(k, c, d), (k, c, d) => sealer.open(k, c, d)];
  }
  if (variant.includes("fastcrypto")) return [fastSeal, fastOpen];
  return [seal, open];
}

function serveHttp2(variant: Variant, socketPath: string): void {
  const workspaceKey = randomBytes(32);
  const keyId = Buffer.from(KEY_ID);
  const definition = services.kmsV2.service;
  const [sealValue, openValue] = cryptoOf(variant);
  const handle = (path: string, request: Buffer): Buffer => {
    if (variant === "http2-echo") return request;
    if (variant.startsWith("http2-proto")) {
      const name = path.slice(path.lastIndexOf("/") + 1);
      const method = definition[name];
      if (method === undefined) throw new Error(`unimplemented ${path}`);
      const decoded = method.requestDeserialize(request.subarray(5)) as {
        plaintext?: Buffer;
        ciphertext?: Buffer;
      };
      const response =
        name === "Encrypt"
          ? {
              ciphertext: encodeKmsCiphertext(
                KEY_ID,
                sealValue(workspaceKey, KMS_V2_CONTEXT, decoded.plaintext ?? Buffer.alloc(0)),
              ),
              key_id: KEY_ID,
              annotations: {},
            }
          : {
              plaintext: openValue(
                workspaceKey,
                KMS_V2_CONTEXT,
                decodeKmsCiphertext(decoded.ciphertext ?? Buffer.alloc(0)).sealed,
              ),
            };
      const body = method.responseSerialize(response);
      const header = Buffer.alloc(5);
      header.writeUInt32BE(body.length, 1);
      return Buffer.concat([header, body]);
    }
    const message = bytesFields(request.subarray(5));
    if (path.endsWith("/Encrypt")) {
      const plaintext = message.get(1) ?? Buffer.alloc(0);
      const sealed = sealValue(workspaceKey, KMS_V2_CONTEXT, plaintext);
      return grpcFrame([
        [1, encodeKmsCiphertext(KEY_ID, sealed)],
        [2, keyId],
      ]);
    }
    const ciphertext = message.get(1) ?? Buffer.alloc(0);
    const plaintext = openValue(
      workspaceKey,
      KMS_V2_CONTEXT,
      decodeKmsCiphertext(ciphertext).sealed,
    );
    return grpcFrame([[1, plaintext]]);
  };
  const server = http2.createServer();
  server.on("stream", (stream, headers) => {
    const path = String(headers[":path"]);
    const chunks: Buffer[] = [];
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("end", () => {
      let answer: Buffer;
      try {
        answer = handle(path, chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks));
      } catch (error) {
        stream.respond(
          {
            ":status": 200,
            "content-type": "application/grpc+proto",
            "grpc-status": String(grpc.status.INVALID_ARGUMENT),
            "grpc-message": encodeURIComponent(String(error)),
          },
          { endStream: true },
        );
        return;
      }
      stream.respond(
        { ":status": 200, "content-type": "application/grpc+proto" },
        { waitForTrailers: true },
      );
      stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
      stream.end(answer);
    });
    stream.on("error", () => {});
  });
  server.listen(socketPath, () => process.stdout.write("ready\n"));
  process.once("SIGTERM", () => server.close(() => process.exit(0)));
}

async function serve(variant: Variant, socketPath: string): Promise<void> {
  await loadSecretbox();
  if (variant.startsWith("http2")) {
    serveHttp2(variant, socketPath);
    return;
  }
  const options: grpc.ServerOptions = {
    "grpc.max_receive_message_length": 4 * 1024 * 1024,
    "grpc.max_send_message_length": 8 * 1024 * 1024,
    ...(variant.endsWith("nochannelz") ? { "grpc.enable_channelz": 0 } : {}),
  };
  const server = new grpc.Server(options);
  if (variant.startsWith("raw")) {
    const echo: grpc.handleUnaryCall<Buffer, Buffer> = (call, callback) =>
      callback(null, call.request);
    server.addService(rawDefinition(), { Encrypt: echo, Decrypt: echo });
  } else {
    const workspaceKey = randomBytes(32);
    const [sealValue, openValue] = cryptoOf(variant);
    const echo = variant === "proto-echo";
    const pair: [(p: Uint8Array) => Uint8Array, (c: Uint8Array) => Uint8Array] = echo
      ? [(plaintext) => plaintext, (ciphertext) => ciphertext]
      : [
          (plaintext) =>
            encodeKmsCiphertext(KEY_ID, sealValue(workspaceKey, KMS_V2_CONTEXT, plaintext)),
          (ciphertext) =>
            openValue(workspaceKey, KMS_V2_CONTEXT, decodeKmsCiphertext(ciphertext).sealed),
        ];
    const [encrypt, decrypt] = pair;
    server.addService(withSafeDeserializers(services.kmsV2.service), {
      Status: (_call: grpc.ServerUnaryCall<object, object>, callback: grpc.sendUnaryData<object>) =>
        callback(null, { version: "v2", healthz: "ok", key_id: KEY_ID }),
      Encrypt: (
        call: grpc.ServerUnaryCall<{ plaintext: Buffer }, object>,
        callback: grpc.sendUnaryData<object>,
      ) => {
        try {
          callback(null, {
            ciphertext: encrypt(call.request.plaintext),
            key_id: KEY_ID,
            annotations: {},
          });
        } catch (error) {
          callback({ code: grpc.status.INTERNAL, details: String(error) });
        }
      },
      Decrypt: (
        call: grpc.ServerUnaryCall<{ ciphertext: Buffer }, object>,
        callback: grpc.sendUnaryData<object>,
      ) => {
        try {
          callback(null, { plaintext: decrypt(call.request.ciphertext) });
        } catch (error) {
          callback({ code: grpc.status.INVALID_ARGUMENT, details: String(error) });
        }
      },
    });
  }
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`unix:${socketPath}`, grpc.ServerCredentials.createInsecure(), (error) =>
      error ? reject(error) : resolve(),
    ),
  );
  process.stdout.write("ready\n");
  process.once("SIGTERM", () => server.tryShutdown(() => process.exit(0)));
}

// ------------------------------------------------------------------ driver side

interface Target {
  pid: number;
  socketPath: string;
  stop(): Promise<void>;
}

async function startVariant(variant: Variant): Promise<Target> {
  if (variant === "daemon") {
    const daemon = await DaemonProcess.start();
    return {
      pid: daemon.pid,
      socketPath: daemon.socketPath,
      stop: async () => {
        await daemon.stop();
      },
    };
  }
  const directory = mkdtempSync(join(tmpdir(), "kms-envelope-floor-"));
  const socketPath = join(directory, "kms.sock");
  const child = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      join(REPO_ROOT, "bench", "floor.ts"),
      "--serve",
      variant,
      "--socket",
      socketPath,
    ],
    { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "inherit"] },
  );
  const exited = new Promise<void>((resolve) => child.on("exit", () => resolve()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${variant} did not start`)), 20_000);
    child.stdout.on("data", (chunk: Buffer) => {
      if (chunk.toString().includes("ready")) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.on("exit", (code) => reject(new Error(`${variant} exited ${code}`)));
  });
  if (child.pid === undefined) throw new Error("no pid");
  return {
    pid: child.pid,
    socketPath,
    stop: async () => {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(timer);
      rmSync(directory, { recursive: true, force: true });
    },
  };
}

async function drive(): Promise<void> {
  const { values } = parseArgs({
    options: {
      duration: { type: "string", default: process.env.BENCH_DURATION ?? "10s" },
      concurrency: { type: "string", default: "64" },
      conns: { type: "string", default: "2" },
      op: { type: "string", default: "roundtrip" },
      variants: { type: "string", default: VARIANTS.join(",") },
      "quiet-wait": { type: "string", default: "20s" },
      name: { type: "string", default: "floor" },
    },
  });
  const durationMs = parseDurationMs(values.duration);
  const quietWaitMs = parseDurationMs(values["quiet-wait"]);
  const variants = values.variants.split(",").map((entry) => entry.trim()) as Variant[];
  for (const variant of variants) {
    if (!VARIANTS.includes(variant)) throw new Error(`unknown variant ${variant}`);
  }
  const kmsload = ensureKmsload();
  ensureDaemonBuilt();
  const flags = {
    op: values.op as "roundtrip",
    concurrency: Number(values.concurrency),
    conns: Number(values.conns),
    size: 32,
    durationMs,
  };
  const rows: Record<string, unknown>[] = [];
  for (const variant of variants) {
    const target = await startVariant(variant);
    try {
      await runKmsload(kmsload, target.socketPath, {
        ...flags,
        durationMs: Math.min(2000, durationMs),
      });
      const quiet = await waitForQuiet(quietWaitMs);
      const cpuBefore = readCpuSeconds(target.pid);
      const machineBefore = readMachineCpu();
      const { report, clientCpuS } = await runKmsload(kmsload, target.socketPath, flags);
      const serverCpuS = readCpuSeconds(target.pid) - cpuBefore;
      const machineBusyS = readMachineCpu().busyS - machineBefore.busyS;
      const row = {
        variant,
        callsPerS: report.calls_per_s,
        p50Us: report.p50_us,
        p99Us: report.p99_us,
        errors: report.errors,
        serverCpuPct: Math.round((100 * serverCpuS) / report.elapsed_s),
        serverCpuUsPerCall: Math.round((serverCpuS * 1e6) / Math.max(1, report.calls)),
        kmsloadCpuPct: Math.round((100 * clientCpuS) / report.elapsed_s),
        otherCores:
          Math.round(
            (100 * Math.max(0, machineBusyS - serverCpuS - clientCpuS)) / report.elapsed_s,
          ) / 100,
        busyCoresBefore: quiet.busyCores,
      };
      log(JSON.stringify(row));
      rows.push(row);
    } finally {
      await target.stop();
    }
  }
  const lines = [
    "# grpc-js floor vs the daemon (KMS v2)",
    "",
    `kmsload --op ${flags.op} --concurrency ${flags.concurrency} --conns ${flags.conns} --size 32 --duration ${goDuration(durationMs)}; ` +
      `Node ${process.version}; ${new Date().toISOString()}` +
      (process.env.BENCH_DAEMON_NODE_FLAGS
        ? `; daemon node flags \`${process.env.BENCH_DAEMON_NODE_FLAGS}\`.`
        : "."),
    "",
    "| server | calls/s | p50 µs | p99 µs | errors | server CPU | server CPU µs/call | kmsload CPU | other load (cores) |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ...rows.map(
      (row) =>
        `| ${row.variant} | ${Math.round(row.callsPerS as number).toLocaleString("en-US")} | ${row.p50Us} | ${row.p99Us} | ${row.errors} | ${row.serverCpuPct}% | ${row.serverCpuUsPerCall} | ${row.kmsloadCpuPct}% | ${row.otherCores} |`,
    ),
    "",
  ];
  mkdirSync(RESULTS_DIR, { recursive: true });
  const daemonFlags = process.env.BENCH_DAEMON_NODE_FLAGS ?? "";
  writeFileSync(
    join(RESULTS_DIR, `${values.name}.json`),
    `${JSON.stringify({ flags, daemonNodeFlags: daemonFlags, rows }, null, 2)}\n`,
  );
  writeFileSync(join(RESULTS_DIR, `${values.name}.md`), lines.join("\n"));
  process.stdout.write(lines.join("\n"));
}

const { values: top } = parseArgs({
  strict: false,
  options: { serve: { type: "string" }, socket: { type: "string" } },
});
const run =
  typeof top.serve === "string" && typeof top.socket === "string"
    ? serve(top.serve as Variant, top.socket)
    : drive();
run.catch((error: unknown) => {
  process.stderr.write(
    `floor: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exitCode = 1;
});
