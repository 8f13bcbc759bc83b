// KMS v2 beside its floor, for `npm run bench`: the daemon and a bare node:http2 gRPC server
// (bench/kms-floor-server.ts: framing and one protobuf field, nothing else) each serve kmsload's
// checked roundtrip at concurrency 64 on one connection, as kube-apiserver connects. The two
// take turns run by run so other load on the shared machine falls on both alike; the medians of
// the runs are compared as a ratio (the throughput issue asks for at least 0.85).
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  DaemonProcess,
  type KmsloadReport,
  log,
  REPO_ROOT,
  readCpuSeconds,
  runKmsload,
  waitForQuiet,
} from "./lib.js";

const CONCURRENCY = 64;
const SIZE = 32;

/** A server under test: where it listens and which process to charge CPU to. */
interface Contender {
  name: string;
  socketPath: string;
  pid: number;
}

/** One contender's medians over the rounds. */
export interface FloorRow {
  name: string;
  callsPerS: number;
  p50Us: number;
  p99Us: number;
  cpuUsPerCall: number;
  errors: number;
  mismatches: number;
}

export interface KmsFloorReport {
  rounds: number;
  roundMs: number;
  concurrency: number;
  rows: FloorRow[];
  /** Daemon calls/s over the floor's (medians). */
  ratio: number;
}

/** The middle sample (the upper one of an even count). */
export function median(samples: readonly number[]): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
}

async function startFloorServer(): Promise<{ contender: Contender; stop: () => Promise<void> }> {
  const directory = await mkdtemp(join(tmpdir(), "kms-envelope-floor-"));
  const socketPath = join(directory, "floor.sock");
  const child = spawn(
    process.execPath,
    ["--import", "tsx", join(REPO_ROOT, "bench", "kms-floor-server.ts"), socketPath],
    { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "inherit"] },
  );
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  await new Promise<void>((resolve, reject) => {
    child.stdout.once("data", () => resolve());
    child.once("exit", (code) => reject(new Error(`the floor server exited ${code} at start`)));
  });
  return {
    contender: { name: "bare node:http2 server", socketPath, pid: child.pid as number },
    stop: async () => {
      child.kill("SIGTERM");
      await exited;
      await rm(directory, { recursive: true, force: true });
    },
  };
}

/** Alternates the daemon and the floor server under kmsload roundtrip at concurrency 64. */
export async function measureKmsFloor(
  kmsload: string,
  rounds: number,
  roundMs: number,
  quietWaitMs: number,
): Promise<KmsFloorReport> {
  const daemon = await DaemonProcess.start();
  const floor = await startFloorServer();
  const contenders: Contender[] = [
    { name: "kms-envelope daemon", socketPath: daemon.socketPath, pid: daemon.pid },
    floor.contender,
  ];
  const samples = new Map<string, { report: KmsloadReport; cpuUsPerCall: number }[]>();
  try {
    for (const contender of contenders) {
      // Warm-up: JIT and connection set-up are not what is compared.
      await runKmsload(kmsload, contender.socketPath, {
        op: "roundtrip",
        concurrency: CONCURRENCY,
        conns: 1,
        size: SIZE,
        durationMs: 2000,
      });
      samples.set(contender.name, []);
    }
    for (let round = 0; round < rounds; round++) {
      // Who goes first alternates too, so neither always runs right after a quiet wait.
      const order = round % 2 === 0 ? contenders : [...contenders].reverse();
      for (const contender of order) {
        await waitForQuiet(quietWaitMs);
        const cpuBefore = readCpuSeconds(contender.pid);
        const { report } = await runKmsload(kmsload, contender.socketPath, {
          op: "roundtrip",
          concurrency: CONCURRENCY,
          conns: 1,
          size: SIZE,
          durationMs: roundMs,
        });
        const cpuS = readCpuSeconds(contender.pid) - cpuBefore;
        const cpuUsPerCall = report.calls > 0 ? Math.round((cpuS * 1e6) / report.calls) : 0;
        samples.get(contender.name)?.push({ report, cpuUsPerCall });
        log(
          `floor comparison round ${round + 1}/${rounds}, ${contender.name}: ${report.calls_per_s} calls/s, ${cpuUsPerCall} µs CPU/call`,
        );
      }
    }
  } finally {
    await daemon.stop();
    await floor.stop();
  }
  const rows = contenders.map((contender): FloorRow => {
    const runs = samples.get(contender.name) ?? [];
    return {
      name: contender.name,
      callsPerS: Math.round(median(runs.map((run) => run.report.calls_per_s))),
      p50Us: median(runs.map((run) => run.report.p50_us)),
      p99Us: median(runs.map((run) => run.report.p99_us)),
      cpuUsPerCall: median(runs.map((run) => run.cpuUsPerCall)),
      errors: runs.reduce((sum, run) => sum + run.report.errors, 0),
      mismatches: runs.reduce((sum, run) => sum + run.report.mismatches, 0),
    };
  });
  const [ours, bare] = rows as [FloorRow, FloorRow];
  return {
    rounds,
    roundMs,
    concurrency: CONCURRENCY,
    rows,
    ratio: Math.round((ours.callsPerS / bare.callsPerS) * 100) / 100,
  };
}

/** The Markdown section of latest.md. */
export function kmsFloorSection(report: KmsFloorReport | undefined, error?: string): string[] {
  const lines = ["## KMS v2 beside a bare node:http2 server", ""];
  if (report === undefined) {
    lines.push(`Not measured: ${error ?? "skipped"}.`, "");
    return lines;
  }
  lines.push(
    `kmsload roundtrip (Encrypt, then a checked Decrypt) at concurrency ${report.concurrency} on one connection, ${SIZE}-byte seeds; the daemon and the bare server take turns, ${report.rounds} runs of ${report.roundMs / 1000} s each; medians. The bare server answers valid KMS v2 messages with no crypto, limits, metrics or logging (bench/kms-floor-server.ts).`,
    "",
    "| server | calls/s | p50 µs | p99 µs | server CPU µs/call | errors | mismatches |",
    "|---|---:|---:|---:|---:|---:|---:|",
  );
  for (const row of report.rows) {
    lines.push(
      `| ${row.name} | ${row.callsPerS.toLocaleString("en-US")} | ${row.p50Us} | ${row.p99Us} | ${row.cpuUsPerCall} | ${row.errors} | ${row.mismatches} |`,
    );
  }
  lines.push(
    "",
    `Daemon / bare server: **${report.ratio.toFixed(2)}×** calls/s (the throughput issue asks for at least 0.85×).`,
    "",
  );
  return lines;
}
