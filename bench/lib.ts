// Shared helpers of the benchmark scripts: repository paths, building the daemon and the native
// load client, running the daemon as a child process, and reading its RSS / CPU from /proc.
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { type LaunchedDaemon, launchDaemon } from "../test/support/daemon-launcher.js";

/** Repository root (the directory holding bench/). */
export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
/** Where bench artefacts that must not be committed live (git-ignored). */
export const BIN_DIR = join(REPO_ROOT, "bench", ".bin");
/** Where results are written. */
export const RESULTS_DIR = join(REPO_ROOT, "bench", "results");
/** Built daemon entry point. */
export const DAEMON_MAIN = join(REPO_ROOT, "dist", "src", "cli", "main.js");
/**
 * The native KMS v2 load client's sources and build script. It is the team's shared tool, not
 * part of this repository: KMSLOAD_DIR says where it is, beside the checkout by default.
 */
export const KMSLOAD_DIR =
  process.env.KMSLOAD_DIR ?? join(REPO_ROOT, "..", "shared", "tools", "kmsload");

/** Progress output goes to stderr so stdout carries only the final Markdown. */
export function log(message: string): void {
  process.stderr.write(`[bench] ${message}\n`);
}

/** Parses "10s", "500ms", "2m" or a bare number of seconds into milliseconds. */
export function parseDurationMs(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$/.exec(text);
  if (match === null) throw new Error(`cannot parse duration ${JSON.stringify(text)}`);
  const value = Number(match[1]);
  const unit = match[2] ?? "s";
  return Math.round(value * (unit === "ms" ? 1 : unit === "m" ? 60_000 : 1000));
}

/** Formats milliseconds the way Go's time.ParseDuration accepts them. */
export function goDuration(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

function newestMtime(path: string): number {
  return statSync(path).mtimeMs;
}

/** .ts sources under src/ and providers/ whose dist/*.js is missing or older. */
export function staleDistSources(): string[] {
  const stale: string[] = [];
  const walk = (directory: string): void => {
    for (const entry of readdirSync(directory, { withFileTypes: true })) {
      const path = join(directory, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith(".ts") && !entry.name.endsWith(".d.ts")) {
        const built = join(REPO_ROOT, "dist", relative(REPO_ROOT, path)).replace(/\.ts$/, ".js");
        if (!existsSync(built) || newestMtime(built) < newestMtime(path)) stale.push(path);
      }
    }
  };
  for (const root of ["src", "providers"]) walk(join(REPO_ROOT, root));
  return stale;
}

/** Runs `npm run build` when dist/ is missing or older than the sources. Returns true if built. */
export function ensureDaemonBuilt(): boolean {
  const stale = staleDistSources();
  if (existsSync(DAEMON_MAIN) && stale.length === 0) return false;
  log(
    `dist/ is ${existsSync(DAEMON_MAIN) ? `stale (${stale.length} newer sources)` : "missing"}: npm run build`,
  );
  const result = spawnSync("npm", ["run", "build"], { cwd: REPO_ROOT, stdio: ["ignore", 2, 2] });
  if (result.status !== 0) {
    throw new Error("npm run build failed: the daemon cannot be benchmarked (see output above)");
  }
  return true;
}

/** Builds (or reuses) the kmsload binary in bench/.bin/; returns its path. */
export function ensureKmsload(): string {
  const binary = join(BIN_DIR, "kmsload");
  const source = join(KMSLOAD_DIR, "main.go");
  const script = join(KMSLOAD_DIR, "build.sh");
  if (!existsSync(script)) {
    throw new Error(
      `kmsload build script not found at ${script}: set KMSLOAD_DIR to the kmsload tool's directory`,
    );
  }
  if (existsSync(binary) && newestMtime(binary) >= newestMtime(source)) return binary;
  log(`building kmsload into ${relative(REPO_ROOT, binary)} (may apt-install Go the first time)`);
  const result = spawnSync("bash", [script, binary], { stdio: ["ignore", 2, 2] });
  if (result.status !== 0 || !existsSync(binary)) {
    throw new Error(
      `building kmsload failed (bash ${relative(REPO_ROOT, script)} exited ${result.status ?? result.signal}); ` +
        "it needs apt access for golang-go, golang-google-grpc-dev and golang-google-protobuf-dev",
    );
  }
  return binary;
}

/** Memory figures of a process from /proc/<pid>/status, in KiB. */
export interface MemorySample {
  rssKiB: number;
  hwmKiB: number;
}

/** Reads VmRSS and VmHWM (peak RSS) of a process. */
export function readMemory(pid: number): MemorySample {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const field = (name: string): number => {
    const match = new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status);
    return match === null ? Number.NaN : Number(match[1]);
  };
  return { rssKiB: field("VmRSS"), hwmKiB: field("VmHWM") };
}

let clockTicks: number | undefined;

/** User + system CPU seconds a process has used so far (/proc/<pid>/stat). */
export function readCpuSeconds(pid: number, thread?: number): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  // A thread's own figures are under task/<tid>; the main thread's tid is the pid.
  const stat = readFileSync(
    thread === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${thread}/stat`,
    "utf8",
  );
  // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
  const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(rest[11]) + Number(rest[12])) / clockTicks;
}

/** Extra node flags for the daemon from BENCH_DAEMON_NODE_FLAGS (space-separated). */
export function daemonNodeFlags(): string[] {
  return (process.env.BENCH_DAEMON_NODE_FLAGS ?? "").split(/\s+/).filter((flag) => flag !== "");
}

/** Options of a daemon run. */
export interface DaemonOptions {
  /** Extra node flags placed before the script, e.g. --cpu-prof. */
  nodeFlags?: string[];
  /** How long to wait for the daemon to serve. */
  startTimeoutMs?: number;
  /** --http-address for /metrics and the probes; "off" unless given. */
  httpAddress?: string;
  /** --log-level; "warn" unless given. */
  logLevel?: string;
  /** More serve flags (e.g. --field-workers 2). */
  args?: string[];
}

/**
 * The daemon as the benchmarks run it: the built CLI, a temporary socket and a fresh master
 * key, started by the launcher the tests use.
 */
export type DaemonProcess = LaunchedDaemon;

export const DaemonProcess = {
  /** Starts `node dist/src/cli/main.js serve` and waits until it serves. */
  async start(options: DaemonOptions = {}): Promise<DaemonProcess> {
    const directory = await mkdtemp(join(tmpdir(), "kms-envelope-bench-"));
    const daemon = await launchDaemon({
      command: [process.execPath, ...daemonNodeFlags(), ...(options.nodeFlags ?? []), DAEMON_MAIN],
      socketPath: join(directory, "kms.sock"),
      env: { ENCRYPTION_MASTER_KEY: randomBytes(32).toString("base64") },
      httpAddress: options.httpAddress ?? "off",
      logLevel: options.logLevel ?? "warn",
      args: options.args,
      startTimeoutMs: options.startTimeoutMs,
    });
    // The socket directory goes with the daemon, however it ends.
    void daemon.exited().then(() => rm(directory, { recursive: true, force: true }));
    return daemon;
  },
};

/** kmsload's one-line JSON report. */
export interface KmsloadReport {
  op: string;
  concurrency: number;
  calls: number;
  errors: number;
  calls_per_s: number;
  p50_us: number;
  p90_us: number;
  p99_us: number;
  max_us: number;
  size: number;
  conns: number;
  elapsed_s: number;
  mismatches: number;
  first_error?: string;
}

/** Flags of one kmsload run. */
export interface KmsloadFlags {
  op: "roundtrip" | "encrypt" | "decrypt" | "status";
  concurrency: number;
  conns: number;
  size: number;
  durationMs: number;
}

/** Runs kmsload to completion and parses its JSON line (exit 0 or 1 both carry one). */
export function runKmsload(
  binary: string,
  socketPath: string,
  flags: KmsloadFlags,
): Promise<{ report: KmsloadReport; argv: string[]; clientCpuS: number }> {
  const argv = [
    "--socket",
    socketPath,
    "--op",
    flags.op,
    "--concurrency",
    String(flags.concurrency),
    "--conns",
    String(flags.conns),
    "--size",
    String(flags.size),
    "--duration",
    goDuration(flags.durationMs),
  ];
  return new Promise((resolve, reject) => {
    // bash's `times` reports the CPU kmsload used (children user and system time) on stderr.
    const child = spawn(
      "bash",
      ["-c", '"$0" "$@"; code=$?; times >&2; exit $code', binary, ...argv],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    // kmsload bounds itself at duration + 5 s (+ dial); this is only a safety net.
    const timer = setTimeout(() => child.kill("SIGKILL"), flags.durationMs + 30_000);
    child.on("error", reject);
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      const line = stdout.trim().split("\n").pop() ?? "";
      const timesLine = stderr.trim().split("\n").pop() ?? "";
      const clientCpuS = [...timesLine.matchAll(/(\d+)m([\d.]+)s/g)].reduce(
        (sum, match) => sum + Number(match[1]) * 60 + Number(match[2]),
        0,
      );
      if ((code === 0 || code === 1) && line.startsWith("{")) {
        resolve({ report: JSON.parse(line) as KmsloadReport, argv, clientCpuS });
      } else {
        const message = stderr.trim().split("\n").slice(0, -2).join("\n");
        reject(
          new Error(
            `kmsload ${argv.join(" ")} failed (exit ${code ?? signal}): ${message || stdout.trim()}`,
          ),
        );
      }
    });
  });
}

/** Busy and total CPU time of the whole machine so far, in seconds (all cores, /proc/stat). */
export function readMachineCpu(): { busyS: number; totalS: number } {
  readCpuSeconds(process.pid); // initialises clockTicks
  const fields = (readFileSync("/proc/stat", "utf8").split("\n")[0] ?? "")
    .trim()
    .split(/\s+/)
    .slice(1, 9)
    .map(Number);
  const total = fields.reduce((sum, value) => sum + value, 0);
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
  const ticks = clockTicks ?? 100;
  return { busyS: (total - idle) / ticks, totalS: total / ticks };
}

/**
 * Waits (up to maxWaitMs) until the machine is nearly idle, so other people's jobs on the shared
 * cores do not skew a run. Returns the busy cores measured in the last second.
 */
export async function waitForQuiet(
  maxWaitMs: number,
  thresholdCores = 0.25,
): Promise<{ waitedMs: number; busyCores: number }> {
  const started = Date.now();
  for (;;) {
    const before = readMachineCpu();
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const after = readMachineCpu();
    const busyCores = (after.busyS - before.busyS) / 1;
    const waitedMs = Date.now() - started;
    if (busyCores <= thresholdCores || waitedMs >= maxWaitMs) {
      if (waitedMs > 1500 || busyCores > thresholdCores) {
        log(
          `machine busy: ${busyCores.toFixed(2)} cores used by other processes (waited ${Math.round(waitedMs / 1000)} s)`,
        );
      }
      return { waitedMs, busyCores: Math.round(busyCores * 100) / 100 };
    }
  }
}

/**
 * Runs bench/field-load.ts as its own process against a daemon socket for `durationMs` with the
 * given extra flags, and resolves with the JSON report line it prints last. Exit 1 (errors were
 * counted) still yields the report; anything else is a failure carrying the client's stderr.
 */
export function runFieldLoad(
  socketPath: string,
  durationMs: number,
  flags: string[],
): Promise<string> {
  return runBenchClient("field-load.ts", socketPath, durationMs, flags);
}

/** Runs a bench/ load client script (same contract as runFieldLoad) against the daemon. */
export function runBenchClient(
  scriptName: string,
  socketPath: string,
  durationMs: number,
  flags: string[],
): Promise<string> {
  const script = join(REPO_ROOT, "bench", scriptName);
  const args = [
    "--import",
    "tsx",
    script,
    "--socket",
    socketPath,
    "--duration",
    goDuration(durationMs),
    ...flags,
  ];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, {
      cwd: REPO_ROOT,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    // Up to 3 routes or batch sizes × 2 phases, plus warm-up and setup; far more than enough.
    const timer = setTimeout(() => child.kill("SIGKILL"), 6 * durationMs + 120_000);
    child.on("error", reject);
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      const line = stdout.trim().split("\n").pop() ?? "";
      if ((code === 0 || code === 1) && line.startsWith("{")) resolve(line);
      else reject(new Error(`${scriptName} failed (exit ${code ?? signal}): ${stderr.trim()}`));
    });
  });
}
