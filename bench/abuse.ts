// The abuse phase of `npm run bench` (issue 11): one daemon with default limits, attacked by
// bench/abuse-client.ts (its own process) in one scenario after another, while kmsload measures
// KMS v2 Status and roundtrip latency at concurrency 1 and the daemon's RSS is sampled. The
// numbers are reported, not asserted.
import { attackerCell, latencyCell, mib } from "./abuse-section.js";
import type { AttackReport, Scenario } from "./abuse-tally.js";
import {
  DaemonProcess,
  log,
  readCpuSeconds,
  readMemory,
  runBenchClient,
  runKmsload,
  waitForQuiet,
} from "./lib.js";

/** KMS v2 latency seen by kmsload during one scenario, or why it could not be measured. */
export interface KmsLatency {
  calls: number;
  errors: number;
  p50Us: number;
  p99Us: number;
  maxUs: number;
  firstError?: string;
  /** kmsload could not run at all (e.g. it could not connect). */
  failed?: string;
}

/** One scenario's measurements. */
export interface AbuseRow {
  scenario: Scenario | "none";
  title: string;
  busyCoresBefore: number;
  rssKiB: { before: number; peak: number; after: number; samples: number };
  /** Average cores the daemon used while attacked (all threads). */
  daemonCores: number;
  status: KmsLatency;
  roundtrip: KmsLatency;
  attacker?: AttackReport;
  attackerError?: string;
  /** Calls the daemon counted meanwhile (/metrics), by "method code". */
  daemonCalls: Record<string, number>;
  /** Connections the daemon closed to stay within --max-connections (/metrics). */
  connectionsShed: number;
  /** Log the daemon wrote from the attack's start to the "after" sample. */
  logBytes: number;
  logLines: number;
  /** Set when the daemon was no longer running after the scenario. */
  daemonExit?: string;
}

/** The abuse phase's section of latest.json. */
export interface AbuseReport {
  /** When and on what the phase ran (it may run alone, after the other sections). */
  machine: Record<string, unknown>;
  settings: {
    attackMs: number;
    rampMs: number;
    kmsMs: number;
    settleMs: number;
    /** RSS sampling period during an attack. */
    sampleMs: number;
    /** The flood's shortest settle: one log-throttle window. */
    logWindowMs: number;
    fieldConcurrency: number;
    floodCalls: number;
  };
  rows: AbuseRow[];
  daemonExitCode: number | null;
}

interface Plan {
  scenario: Scenario | "none";
  title: string;
  flags: string[];
  /** At least this long before "after" when what is measured arrives later (a log summary). */
  settleMs?: number;
}

const RAMP_MS = 2000;
const SAMPLE_MS = 100;
const KMS_SIZE = 32;
// The log throttle reports suppressed lines when its 10 s window ends.
const LOG_WINDOW_MS = 11_000;

function plans(fieldConcurrency: number, floodCalls: number): Plan[] {
  return [
    { scenario: "none", title: "none (baseline)", flags: [] },
    {
      scenario: "slow-body",
      title: "slow body: 2 connections × 100 Encrypt streams declaring 4 MiB, 1-byte DATA frames",
      flags: ["--connections", "2", "--streams", "100"],
    },
    {
      scenario: "bulk",
      title: "unfinished bulk: 4 connections × 100 streams of 4 MiB in full frames, never ended",
      flags: ["--connections", "4", "--streams", "100", "--max-bytes", String(4 * 1024 ** 3)],
    },
    {
      scenario: "idle",
      title: "idle connections: 200 opened and left idle",
      flags: ["--connections", "200"],
    },
    {
      scenario: "field-batches",
      title: `maximum field batches: Seal of 10,000 records × 10 fields × 16 B, ${fieldConcurrency} in flight`,
      flags: [
        "--connections",
        String(fieldConcurrency),
        "--records",
        "10000",
        "--fields",
        "10",
        "--value-bytes",
        "16",
      ],
    },
    {
      scenario: "flood",
      title: `flood: up to ${floodCalls.toLocaleString("en-US")} calls to an unknown method`,
      flags: ["--connections", "2", "--streams", "50", "--calls", String(floodCalls)],
      settleMs: LOG_WINDOW_MS,
    },
  ];
}

/** Counters of interest from /metrics: calls by "method code", connections shed. */
async function scrape(httpAddress: string): Promise<Map<string, number>> {
  const text = await (await fetch(`http://${httpAddress}/metrics`)).text();
  const counters = new Map<string, number>();
  for (const match of text.matchAll(
    /^kms_envelope_grpc_requests_total\{method="([^"]*)",code="([^"]*)"\} (\d+)$/gm,
  )) {
    counters.set(`${match[1]} ${match[2]}`, Number(match[3]));
  }
  let shed = 0;
  for (const match of text.matchAll(/^kms_envelope_connections_shed_total\{[^}]*\} (\d+)$/gm))
    shed += Number(match[1]);
  counters.set("connections shed", shed);
  return counters;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function measureKms(
  kmsload: string,
  socketPath: string,
  op: "status" | "roundtrip",
  durationMs: number,
): Promise<KmsLatency> {
  try {
    const { report } = await runKmsload(kmsload, socketPath, {
      op,
      concurrency: 1,
      conns: 1,
      size: KMS_SIZE,
      durationMs,
    });
    return {
      calls: report.calls,
      errors: report.errors,
      p50Us: report.p50_us,
      p99Us: report.p99_us,
      maxUs: report.max_us,
      ...(report.first_error === undefined ? {} : { firstError: report.first_error }),
    };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    return { calls: 0, errors: 0, p50Us: 0, p99Us: 0, maxUs: 0, failed: message };
  }
}

async function measureScenario(
  daemon: DaemonProcess,
  httpAddress: string,
  kmsload: string,
  plan: Plan,
  settings: AbuseReport["settings"] & { quietWaitMs: number },
): Promise<AbuseRow> {
  log(`abuse: ${plan.title}`);
  const quiet = await waitForQuiet(settings.quietWaitMs);
  const countersBefore = await scrape(httpAddress);
  const logBytesBefore = daemon.stdoutBytes;
  const logLinesBefore = daemon.lines.length;
  const before = readMemory(daemon.pid).rssKiB;
  const cpuBefore = readCpuSeconds(daemon.pid);
  const started = Date.now();
  let peak = before;
  let samples = 0;
  // The sampler stops reading once the daemon is gone rather than failing the phase.
  const sampler = setInterval(() => {
    try {
      peak = Math.max(peak, readMemory(daemon.pid).rssKiB);
      samples += 1;
    } catch {
      clearInterval(sampler);
    }
  }, SAMPLE_MS);
  const attack =
    plan.scenario === "none"
      ? sleep(settings.attackMs).then(() => undefined)
      : runBenchClient("abuse-client.ts", daemon.socketPath, settings.attackMs, [
          "--scenario",
          plan.scenario,
          ...plan.flags,
        ]).then((line) => JSON.parse(line) as AttackReport);
  const attacker = attack.then(
    (report) => ({ report, error: undefined }),
    (error: unknown) => ({
      report: undefined,
      error: error instanceof Error ? error.message : String(error),
    }),
  );
  await sleep(settings.rampMs);
  const status = await measureKms(kmsload, daemon.socketPath, "status", settings.kmsMs);
  const roundtrip = await measureKms(kmsload, daemon.socketPath, "roundtrip", settings.kmsMs);
  const outcome = await attacker;
  clearInterval(sampler);
  const wallS = (Date.now() - started) / 1000;
  const alive = daemon.child.exitCode === null && daemon.child.signalCode === null;
  const daemonCores = alive ? (readCpuSeconds(daemon.pid) - cpuBefore) / wallS : 0;
  await sleep(Math.max(settings.settleMs, plan.settleMs ?? 0));
  const stillAlive = daemon.child.exitCode === null && daemon.child.signalCode === null;
  const countersAfter = stillAlive ? await scrape(httpAddress) : countersBefore;
  const daemonCalls: Record<string, number> = {};
  for (const [key, value] of countersAfter) {
    const delta = value - (countersBefore.get(key) ?? 0);
    if (delta > 0 && key !== "connections shed") daemonCalls[key] = delta;
  }
  const row: AbuseRow = {
    scenario: plan.scenario,
    title: plan.title,
    busyCoresBefore: quiet.busyCores,
    rssKiB: {
      before,
      peak,
      after: stillAlive ? readMemory(daemon.pid).rssKiB : 0,
      samples,
    },
    daemonCores: Math.round(daemonCores * 100) / 100,
    status,
    roundtrip,
    ...(outcome.report === undefined ? {} : { attacker: outcome.report }),
    ...(outcome.error === undefined ? {} : { attackerError: outcome.error }),
    daemonCalls,
    connectionsShed:
      (countersAfter.get("connections shed") ?? 0) - (countersBefore.get("connections shed") ?? 0),
    logBytes: daemon.stdoutBytes - logBytesBefore,
    logLines: daemon.lines.length - logLinesBefore,
    ...(stillAlive ? {} : { daemonExit: String(daemon.child.exitCode ?? daemon.child.signalCode) }),
  };
  log(
    `abuse ${plan.scenario}: RSS ${mib(row.rssKiB.before)} → peak ${mib(row.rssKiB.peak)} → ${mib(row.rssKiB.after)}; ` +
      `status ${latencyCell(status)} ms; roundtrip ${latencyCell(roundtrip)} ms; attacker: ${attackerCell(row)}`,
  );
  return row;
}

/**
 * Starts a daemon with default limits (and /metrics on an ephemeral loopback port), runs every
 * scenario against it, stops it. A daemon that dies ends the phase; its row says how.
 */
export async function measureAbuse(
  kmsload: string,
  options: {
    machine: Record<string, unknown>;
    attackMs: number;
    settleMs: number;
    quietWaitMs: number;
    fieldConcurrency: number;
    floodCalls: number;
    /** Scenarios to run (all when undefined). */
    only?: string[];
  },
): Promise<AbuseReport> {
  const { fieldConcurrency, floodCalls } = options;
  // Status, then roundtrip, each over half of what is left of the attack after the ramp.
  const kmsMs = Math.floor((options.attackMs - RAMP_MS - 1000) / 2);
  if (kmsMs < 1000) throw new Error("BENCH_ABUSE_DURATION must be at least 5s");
  const settings = {
    attackMs: options.attackMs,
    rampMs: RAMP_MS,
    kmsMs,
    settleMs: options.settleMs,
    sampleMs: SAMPLE_MS,
    logWindowMs: LOG_WINDOW_MS,
    fieldConcurrency,
    floodCalls,
  };
  // The production log level, so "log written" is what an operator's disk would get.
  const daemon = await DaemonProcess.start({ httpAddress: "127.0.0.1:0", logLevel: "info" });
  const rows: AbuseRow[] = [];
  let daemonExitCode: number | null = null;
  try {
    const { httpAddress } = daemon;
    for (const plan of plans(fieldConcurrency, floodCalls)) {
      if (options.only !== undefined && !options.only.includes(plan.scenario)) continue;
      const row = await measureScenario(daemon, httpAddress, kmsload, plan, {
        ...settings,
        quietWaitMs: options.quietWaitMs,
      });
      rows.push(row);
      if (row.daemonExit !== undefined) {
        log(`abuse: the daemon died (${row.daemonExit}); remaining scenarios skipped`);
        break;
      }
    }
  } finally {
    daemonExitCode = await daemon.stop("SIGTERM");
  }
  return { machine: options.machine, settings, rows, daemonExitCode };
}
