// `npm run bench`: KMS v2 throughput/latency with the native kmsload client, field-service
// throughput with a separate Node load process, and daemon RSS; writes bench/results/latest.*
// and prints the Markdown summary on stdout (progress goes to stderr).
//
// Environment: BENCH_DURATION (per run, default 10s), BENCH_FIELD_DURATION (per field phase,
// default BENCH_DURATION), BENCH_CONNS (comma list of --conns to try, default 1,2,4,8),
// BENCH_FIELD_CONCURRENCY (default 16), BENCH_QUIET_WAIT (how long to wait for other jobs on the
// machine to go quiet before each run, default 20s), BENCH_DAEMON_NODE_FLAGS (extra node flags
// for the daemon, e.g. "--max-semi-space-size=16", to try runtime tuning), BENCH_REWRAP_RECORDS
// (records per rewrap run, default 10000). The abuse phase (bench/abuse.ts) ends every run;
// BENCH_ONLY=abuse runs it alone and replaces only its section of the results; so does
// BENCH_ONLY=lookups for the lookups phase (BENCH_LOOKUP_RECORDS records per backend, default
// 100000; token rate measured for BENCH_DURATION), and BENCH_ONLY=fields for the field layer
// beside @47ng/cloak (BENCH_COMPARE_ROUNDS rounds, default 7, of BENCH_COMPARE_ROUND, default
// 1s, per contender and operation), and BENCH_ONLY=floor for the daemon beside a bare node:http2
// server (BENCH_FLOOR_ROUNDS runs each, default 5, of BENCH_FLOOR_ROUND, default 5s), and
// BENCH_ONLY=workers for the field service with one field worker beside two
// (BENCH_WORKERS_ROUNDS, default 5, of BENCH_WORKERS_ROUND, default 3s, per operation). Its own
// variables: BENCH_ABUSE_DURATION (per scenario, default 20s), BENCH_ABUSE_SETTLE (wait before
// the "after" RSS, default 5s), BENCH_ABUSE_SCENARIOS (comma list, default all),
// BENCH_ABUSE_FIELD_CONCURRENCY (default 3), BENCH_ABUSE_FLOOD_CALLS (default 100000).
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, platform, release, totalmem } from "node:os";
import { join, relative } from "node:path";
import { type AbuseReport, measureAbuse } from "./abuse.js";
import { abuseSection, fieldRequirementMet } from "./abuse-section.js";
import type { EngineFieldsReport } from "./engine-fields.js";
import {
  compareFieldEncryption,
  type FieldCompareReport,
  fieldCompareSection,
} from "./field-compare.js";
import type { FieldLoadReport } from "./field-load.js";
import {
  type FieldWorkersReport,
  fieldWorkersFailed,
  fieldWorkersSection,
  runFieldWorkersPhase,
} from "./field-workers.js";
import { type KmsFloorReport, kmsFloorSection, measureKmsFloor } from "./kms-floor.js";
import {
  DAEMON_MAIN,
  DaemonProcess,
  daemonNodeFlags,
  ensureDaemonBuilt,
  ensureKmsload,
  goDuration,
  type KmsloadFlags,
  type KmsloadReport,
  log,
  type MemorySample,
  parseDurationMs,
  REPO_ROOT,
  RESULTS_DIR,
  readCpuSeconds,
  readMachineCpu,
  readMemory,
  runBenchClient,
  runFieldLoad,
  runKmsload,
  waitForQuiet,
} from "./lib.js";
import { type LookupReport, lookupsSection, measureLookups } from "./lookups.js";
import { type BenchResults, updateReadme } from "./readme-performance.js";
import { measureRewrap, type RewrapReport, rewrapSection } from "./rewrap.js";
import { measureRewrapWorkers, rewrapWorkersSection } from "./rewrap-worker.js";

/** The project's floor for KMS v2 roundtrip at concurrency 64, in calls/s. */
const MINIMUM_ROUNDTRIP_C64 = 10_000;
const CONCURRENCIES = [1, 16, 64];
const SIZE = 32;

interface KmsRow {
  op: KmsloadFlags["op"];
  concurrency: number;
  conns: number;
  /** Part of the --conns sweep (roundtrip) rather than the main matrix. */
  sweep: boolean;
  argv: string[];
  report: KmsloadReport;
  daemonCpuS: number;
  daemonCpuPct: number;
  daemonCpuUsPerCall: number;
  /** CPU seconds kmsload itself used. */
  clientCpuS: number;
  /** Average cores used by processes other than the daemon and kmsload during the run. */
  otherCores: number;
  /** Busy cores seen just before the run (after waiting for a quiet machine). */
  busyCoresBefore: number;
}

function gitInfo(): { commit: string; dirty: boolean } {
  try {
    const commit = execFileSync("git", ["rev-parse", "HEAD"], { cwd: REPO_ROOT, encoding: "utf8" });
    const status = execFileSync("git", ["status", "--porcelain"], {
      cwd: REPO_ROOT,
      encoding: "utf8",
    });
    return { commit: commit.trim(), dirty: status.trim() !== "" };
  } catch {
    return { commit: "unknown", dirty: false };
  }
}

function machineInfo(): Record<string, unknown> {
  const cores = cpus();
  return {
    cpuModel: cores[0]?.model ?? "unknown",
    cpuCount: cores.length,
    totalMemoryMiB: Math.round(totalmem() / 1024 / 1024),
    platform: `${platform()} ${release()}`,
    node: process.version,
    date: new Date().toISOString(),
    git: gitInfo(),
  };
}

async function measureKms(
  kmsload: string,
  daemon: DaemonProcess,
  flags: KmsloadFlags,
  sweep: boolean,
  quietWaitMs: number,
): Promise<KmsRow> {
  const quiet = await waitForQuiet(quietWaitMs);
  const cpuBefore = readCpuSeconds(daemon.pid);
  const machineBefore = readMachineCpu();
  const { report, argv, clientCpuS } = await runKmsload(kmsload, daemon.socketPath, flags);
  const machineAfter = readMachineCpu();
  const daemonCpuS = readCpuSeconds(daemon.pid) - cpuBefore;
  const machineBusyS = machineAfter.busyS - machineBefore.busyS;
  const wallS = Math.max(report.elapsed_s, 0.001);
  const otherCores = Math.max(0, (machineBusyS - daemonCpuS - clientCpuS) / wallS);
  const row: KmsRow = {
    op: flags.op,
    concurrency: flags.concurrency,
    conns: flags.conns,
    sweep,
    argv,
    report,
    daemonCpuS: Math.round(daemonCpuS * 100) / 100,
    daemonCpuPct: Math.round((100 * daemonCpuS) / wallS),
    daemonCpuUsPerCall: report.calls > 0 ? Math.round((daemonCpuS * 1e6) / report.calls) : 0,
    clientCpuS: Math.round(clientCpuS * 100) / 100,
    otherCores: Math.round(otherCores * 100) / 100,
    busyCoresBefore: quiet.busyCores,
  };
  log(
    `${flags.op} c=${flags.concurrency} conns=${flags.conns}: ${report.calls_per_s} calls/s, ` +
      `p50 ${report.p50_us} µs, p99 ${report.p99_us} µs, errors ${report.errors}, ` +
      `daemon CPU ${row.daemonCpuPct}% (${row.daemonCpuUsPerCall} µs/call), kmsload ${Math.round((100 * clientCpuS) / wallS)}%, other ${row.otherCores} cores`,
  );
  return row;
}

function kib(sample: MemorySample): string {
  return `${(sample.rssKiB / 1024).toFixed(1)} MiB`;
}

function markdown(results: {
  machine: Record<string, unknown>;
  durationMs: number;
  kms: KmsRow[];
  field: FieldLoadReport | undefined;
  fieldDaemonCpuS: number | undefined;
  fieldMachineBusyCores: number | undefined;
  engineFields: EngineFieldsReport | undefined;
  rewrap: RewrapReport | undefined;
  memory: Record<string, MemorySample>;
  minimum: { roundtripC64: number | undefined; required: number; met: boolean };
  abuse: AbuseReport | undefined;
  abuseError?: string;
  lookups?: LookupReport;
  lookupsError?: string;
  fieldCompare?: FieldCompareReport;
  fieldCompareError?: string;
  kmsFloor?: KmsFloorReport;
  kmsFloorError?: string;
  fieldWorkers?: FieldWorkersReport;
  fieldWorkersError?: string;
}): string {
  const { machine, kms, field, memory } = results;
  const git = machine.git as { commit: string; dirty: boolean };
  const lines: string[] = [];
  lines.push("# kms-envelope benchmark", "");
  lines.push(
    `${machine.date} · ${machine.cpuModel} × ${machine.cpuCount} · ${machine.totalMemoryMiB} MiB · ` +
      `Node ${machine.node} · ${machine.platform} · commit ${git.commit.slice(0, 12)}${git.dirty ? " (dirty tree)" : ""}` +
      ((machine.daemonNodeFlags as string[]).length > 0
        ? ` · daemon node flags: \`${(machine.daemonNodeFlags as string[]).join(" ")}\``
        : ""),
    "",
    `Daemon and load clients share the machine's ${machine.cpuCount} cores. Each KMS run lasts ` +
      `${goDuration(results.durationMs)} (kmsload, --size ${SIZE}). A roundtrip is two calls ` +
      "(Encrypt, then a checked Decrypt); calls/s counts RPCs. CPU columns are % of one core " +
      '(user + system, all threads); "other load" is CPU used meanwhile by unrelated processes ' +
      "on the shared machine (a run with other load > 0.2 is noisy).",
    "",
  );
  lines.push("## KMS v2 (kmsload)", "");
  lines.push(
    "| op | concurrency | conns | calls/s | p50 µs | p99 µs | errors | daemon CPU | daemon CPU µs/call | kmsload CPU | other load (cores) |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
  );
  for (const row of kms.filter((entry) => !entry.sweep || isBestSweep(entry, kms))) {
    const r = row.report;
    lines.push(
      `| ${row.op} | ${row.concurrency} | ${row.conns} | ${Math.round(r.calls_per_s).toLocaleString("en-US")} | ${r.p50_us} | ${r.p99_us} | ${r.errors} | ${row.daemonCpuPct}% | ${row.daemonCpuUsPerCall} | ${Math.round((100 * row.clientCpuS) / r.elapsed_s)}% | ${row.otherCores} |`,
    );
  }
  const sweeps = kms.filter((row) => row.sweep);
  if (sweeps.some((row) => row.concurrency > 1)) {
    lines.push("", "### --conns sweep (roundtrip)", "");
    lines.push("| concurrency | conns | calls/s | p50 µs | p99 µs | errors | best |");
    lines.push("|---:|---:|---:|---:|---:|---:|:---:|");
    for (const row of sweeps.filter((entry) => entry.concurrency > 1)) {
      const r = row.report;
      lines.push(
        `| ${row.concurrency} | ${row.conns} | ${Math.round(r.calls_per_s).toLocaleString("en-US")} | ${r.p50_us} | ${r.p99_us} | ${r.errors} | ${isBestSweep(row, kms) ? "✓" : ""} |`,
      );
    }
  }
  lines.push("");
  const { minimum } = results;
  lines.push(
    minimum.roundtripC64 === undefined
      ? "KMS v2 roundtrip at concurrency 64 was not measured."
      : `KMS v2 roundtrip at concurrency 64: ${Math.round(minimum.roundtripC64).toLocaleString("en-US")} calls/s — ` +
          (minimum.met
            ? `meets the ${minimum.required.toLocaleString("en-US")} calls/s minimum.`
            : `**BELOW the ${minimum.required.toLocaleString("en-US")} calls/s minimum.**`),
    "",
  );
  lines.push(...kmsFloorSection(results.kmsFloor, results.kmsFloorError));
  if (results.fieldWorkers !== undefined || results.fieldWorkersError !== undefined)
    lines.push(...fieldWorkersSection(results.fieldWorkers, results.fieldWorkersError));
  lines.push("## Field service (Node gRPC client, separate process)", "");
  if (field === undefined) {
    lines.push("Not measured (the field load client failed; see latest.json).", "");
  } else {
    lines.push(
      `${field.fieldsPerRecord} fields × ${field.valueBytes} bytes per record, ${field.concurrency} calls in flight, ` +
        `${goDuration(field.durationMs)} per phase; every opened value is compared with its original.` +
        (results.fieldDaemonCpuS === undefined
          ? ""
          : ` Daemon CPU over all field phases: ${results.fieldDaemonCpuS.toFixed(1)} s; ` +
            `whole machine busy: ${results.fieldMachineBusyCores} of ${machine.cpuCount} cores on average.`),
      "",
      "| op | records/call | calls/s | records/s | fields/s | p50 µs | p99 µs | errors | mismatches | client CPU |",
      "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    );
    for (const row of field.results) {
      lines.push(
        `| ${row.op} | ${row.batchRecords} | ${Math.round(row.callsPerS).toLocaleString("en-US")} | ${Math.round(row.recordsPerS).toLocaleString("en-US")} | ${Math.round(row.fieldsPerS).toLocaleString("en-US")} | ${row.p50Us} | ${row.p99Us} | ${row.errors} | ${row.mismatches} | ${Math.round((100 * row.clientCpuS) / row.elapsedS)}% |`,
      );
    }
    lines.push("");
  }
  lines.push(...engineFieldsSection(results.engineFields));
  lines.push(...fieldCompareSection(results.fieldCompare, results.fieldCompareError));
  lines.push(...rewrapSection(results.rewrap));
  lines.push(...lookupsSection(results.lookups, results.lookupsError));
  lines.push("## Daemon memory (VmRSS)", "");
  lines.push("| when | RSS | peak (VmHWM) |", "|---|---:|---:|");
  for (const [when, sample] of Object.entries(memory)) {
    lines.push(`| ${when} | ${kib(sample)} | ${(sample.hwmKiB / 1024).toFixed(1)} MiB |`);
  }
  lines.push("");
  lines.push(...abuseSection(results.abuse, results.abuseError));
  return lines.join("\n");
}

function engineFieldsSection(report: EngineFieldsReport | undefined): string[] {
  const lines = ["## Field layer (library in a separate process)", ""];
  if (report === undefined) return [...lines, "Not measured (see latest.json).", ""];
  lines.push(
    `Records of ${report.fieldsPerRecord} fields × ${report.valueBytes} bytes, ${report.batchRecords} records per ` +
      `seal/open, ${report.concurrency} batches in flight. "engine" runs kube-apiserver's transformers ` +
      "in process (kms v2: one seed from the daemon, then no plugin call per field); " +
      '"field service" is one daemon round trip per batch.',
    "",
    "| route | op | fields/s | records/s | mismatches |",
    "|---|---|---:|---:|---:|",
  );
  for (const row of report.results)
    lines.push(
      `| ${row.route} | ${row.op} | ${row.fieldsPerS.toLocaleString("en-US")} | ${Math.round(row.records / row.elapsedS).toLocaleString("en-US")} | ${row.mismatches} |`,
    );
  lines.push("");
  return lines;
}

function isBestSweep(row: KmsRow, all: KmsRow[]): boolean {
  const peers = all.filter(
    (entry) => entry.sweep && entry.op === row.op && entry.concurrency === row.concurrency,
  );
  const best = peers.reduce((a, b) => (b.report.calls_per_s > a.report.calls_per_s ? b : a));
  return best === row;
}

async function runAbusePhase(
  kmsload: string,
  machine: Record<string, unknown>,
  quietWaitMs: number,
): Promise<{ abuse?: AbuseReport; abuseError?: string }> {
  try {
    const only = process.env.BENCH_ABUSE_SCENARIOS;
    return {
      abuse: await measureAbuse(kmsload, {
        machine,
        attackMs: parseDurationMs(process.env.BENCH_ABUSE_DURATION ?? "20s"),
        settleMs: parseDurationMs(process.env.BENCH_ABUSE_SETTLE ?? "5s"),
        quietWaitMs,
        fieldConcurrency: Number(process.env.BENCH_ABUSE_FIELD_CONCURRENCY ?? "3"),
        floodCalls: Number(process.env.BENCH_ABUSE_FLOOD_CALLS ?? "100000"),
        ...(only === undefined ? {} : { only: only.split(",").map((entry) => entry.trim()) }),
      }),
    };
  } catch (error) {
    const abuseError = error instanceof Error ? error.message : String(error);
    log(`abuse phase failed: ${abuseError}`);
    return { abuseError };
  }
}

/** Prints what the abuse phase calls for; true when it failed as a benchmark run. */
function abuseFailed(abuse: AbuseReport | undefined, abuseError: string | undefined): boolean {
  if (abuse === undefined) {
    process.stdout.write(`BENCH FAILED: abuse phase: ${abuseError ?? "not run"}.\n`);
    return true;
  }
  if (!fieldRequirementMet(abuse)) {
    process.stdout.write(
      "UNDER ABUSE: KMS v2 p99 reached 50 ms while maximum-size field batches ran (see latest.md).\n",
    );
  }
  const broken = abuse.rows.filter(
    (row) => row.daemonExit !== undefined || row.attackerError !== undefined,
  );
  for (const row of broken) {
    process.stdout.write(
      `BENCH FAILED: abuse ${row.scenario}: ${row.daemonExit === undefined ? `attacker failed: ${row.attackerError}` : `the daemon died (${row.daemonExit})`}.\n`,
    );
  }
  if (abuse.daemonExitCode !== 0) {
    process.stdout.write(
      `BENCH FAILED: the abuse daemon exited with ${abuse.daemonExitCode} after SIGTERM.\n`,
    );
  }
  return broken.length > 0 || abuse.daemonExitCode !== 0;
}

/** The results file as a previous run left it, if any. */
type PreviousResults = Omit<Parameters<typeof markdown>[0], "durationMs"> & {
  settings: { durationMs: number };
  phaseRuns?: BenchResults["phaseRuns"];
};

type RunInfo = NonNullable<BenchResults["phaseRuns"]>[string];

const README = join(REPO_ROOT, "README.md");

/**
 * BENCH_ONLY=abuse, lookups or fields: that phase alone; the other sections of latest.* are
 * kept. Returns the exit code.
 */
async function phaseOnly(
  phase: Phase,
  kmsload: string,
  machine: Record<string, unknown>,
  quietWaitMs: number,
): Promise<number> {
  let update: Partial<PreviousResults>;
  let failed: boolean;
  if (phase === "abuse") {
    const { abuse, abuseError } = await runAbusePhase(kmsload, machine, quietWaitMs);
    update = { abuse, abuseError };
    failed = abuseFailed(abuse, abuseError);
  } else if (phase === "fields") {
    update = await runFieldComparePhase(quietWaitMs);
    failed = fieldCompareFailed(update);
  } else if (phase === "floor") {
    update = await runKmsFloorPhase(kmsload, quietWaitMs);
    failed = kmsFloorFailed(update);
  } else if (phase === "rewrap") {
    // BENCH_REWRAP_RECORDS per run (default 100000), BENCH_REWRAP_ROUNDS rounds (default 3). Runs
    // of 20,000 records lasted about a second, so the workers' start-ups, which do not begin
    // together, moved the two-worker figure more than a second worker did.
    log("rewrap at scale: SQLite, PostgreSQL with one and two worker processes, alternating");
    await waitForQuiet(quietWaitMs);
    const rewrapWorkers = await measureRewrapWorkers(
      Number(process.env.BENCH_REWRAP_RECORDS ?? "100000"),
      200,
      Number(process.env.BENCH_REWRAP_ROUNDS ?? "3"),
    );
    update = { rewrapWorkers } as Partial<PreviousResults>;
    failed = rewrapWorkers.remaining !== 0;
    process.stdout.write(`${rewrapWorkersSection(rewrapWorkers).join("\n")}\n`);
  } else if (phase === "workers") {
    update = await runFieldWorkersPhase(quietWaitMs);
    failed = fieldWorkersFailed(update);
  } else {
    const daemon = await DaemonProcess.start();
    let result: { lookups?: LookupReport; lookupsError?: string };
    try {
      result = await runLookupsPhase(daemon.socketPath, quietWaitMs);
    } finally {
      await daemon.stop("SIGTERM");
    }
    update = result;
    failed = lookupsFailed(result);
  }
  const path = join(RESULTS_DIR, "latest.json");
  const previous = existsSync(path)
    ? (JSON.parse(readFileSync(path, "utf8")) as PreviousResults & Partial<BenchResults>)
    : undefined;
  // The abuse report carries its own date and commit; the others are noted here.
  if (phase !== "abuse")
    update.phaseRuns = {
      ...previous?.phaseRuns,
      [phase]: { date: machine.date as string, git: machine.git as RunInfo["git"] },
    };
  const merged = { ...previous, ...update };
  mkdirSync(RESULTS_DIR, { recursive: true });
  writeFileSync(path, `${JSON.stringify(merged, null, 2)}\n`);
  if (previous !== undefined) updateReadme(README, merged as unknown as BenchResults);
  const summary =
    previous === undefined
      ? [
          "# kms-envelope benchmark",
          "",
          ...(phase === "abuse"
            ? abuseSection(update.abuse, update.abuseError)
            : phase === "fields"
              ? fieldCompareSection(update.fieldCompare, update.fieldCompareError)
              : phase === "floor"
                ? kmsFloorSection(update.kmsFloor, update.kmsFloorError)
                : phase === "workers"
                  ? fieldWorkersSection(update.fieldWorkers, update.fieldWorkersError)
                  : lookupsSection(update.lookups, update.lookupsError)),
        ].join("\n")
      : markdown({ ...previous, ...update, durationMs: previous.settings.durationMs });
  writeFileSync(join(RESULTS_DIR, "latest.md"), summary);
  process.stdout.write(`${summary}\n`);
  return failed ? 1 : 0;
}

/** The field layer beside @47ng/cloak and the bare cipher, in this process. */
async function runFieldComparePhase(
  quietWaitMs: number,
): Promise<{ fieldCompare?: FieldCompareReport; fieldCompareError?: string }> {
  log("field encryption: the field layer beside @47ng/cloak and bare secretbox, alternating");
  await waitForQuiet(quietWaitMs);
  try {
    return {
      fieldCompare: await compareFieldEncryption(
        Number(process.env.BENCH_COMPARE_ROUNDS ?? "7"),
        parseDurationMs(process.env.BENCH_COMPARE_ROUND ?? "1s"),
      ),
    };
  } catch (error) {
    const fieldCompareError = error instanceof Error ? error.message : String(error);
    log(`field comparison failed: ${fieldCompareError}`);
    return { fieldCompareError };
  }
}

/** A contender that decrypted something else than it encrypted fails the run. */
function fieldCompareFailed(result: {
  fieldCompare?: FieldCompareReport;
  fieldCompareError?: string;
}): boolean {
  const wrong = result.fieldCompare?.results.filter((row) => row.mismatches > 0) ?? [];
  for (const row of wrong)
    process.stdout.write(`BENCH FAILED: ${row.name} decrypted ${row.mismatches} wrong values.\n`);
  if (result.fieldCompareError !== undefined)
    process.stdout.write(`BENCH FAILED: field comparison: ${result.fieldCompareError}.\n`);
  return result.fieldCompareError !== undefined || wrong.length > 0;
}

/** The daemon beside a bare node:http2 server, each in its own process, taking turns. */
async function runKmsFloorPhase(
  kmsload: string,
  quietWaitMs: number,
): Promise<{ kmsFloor?: KmsFloorReport; kmsFloorError?: string }> {
  log("KMS v2 beside a bare node:http2 server: roundtrip at concurrency 64, alternating");
  try {
    return {
      kmsFloor: await measureKmsFloor(
        kmsload,
        Number(process.env.BENCH_FLOOR_ROUNDS ?? "5"),
        parseDurationMs(process.env.BENCH_FLOOR_ROUND ?? "5s"),
        quietWaitMs,
      ),
    };
  } catch (error) {
    const kmsFloorError = error instanceof Error ? error.message : String(error);
    log(`floor comparison failed: ${kmsFloorError}`);
    return { kmsFloorError };
  }
}

/** Errors or wrong plaintexts from either server fail the run. */
function kmsFloorFailed(result: { kmsFloor?: KmsFloorReport; kmsFloorError?: string }): boolean {
  const wrong = result.kmsFloor?.rows.filter((row) => row.errors > 0 || row.mismatches > 0) ?? [];
  for (const row of wrong)
    process.stdout.write(
      `BENCH FAILED: ${row.name}: ${row.errors} errors, ${row.mismatches} mismatches under kmsload.\n`,
    );
  if (result.kmsFloorError !== undefined)
    process.stdout.write(`BENCH FAILED: floor comparison: ${result.kmsFloorError}.\n`);
  return result.kmsFloorError !== undefined || wrong.length > 0;
}

/** The lookups phase against a running daemon. */
async function runLookupsPhase(
  socketPath: string,
  quietWaitMs: number,
): Promise<{ lookups?: LookupReport; lookupsError?: string }> {
  log("lookups: tokens through the daemon, backfill and find on SQLite and PostgreSQL");
  await waitForQuiet(quietWaitMs);
  try {
    return {
      lookups: await measureLookups(
        socketPath,
        Number(process.env.BENCH_LOOKUP_RECORDS ?? "100000"),
        parseDurationMs(process.env.BENCH_DURATION ?? "10s"),
      ),
    };
  } catch (error) {
    const lookupsError = error instanceof Error ? error.message : String(error);
    log(`lookups bench failed: ${lookupsError}`);
    return { lookupsError };
  }
}

/** Wrong search answers or tokens left missing fail the run, like errors elsewhere. */
function lookupsFailed(result: { lookups?: LookupReport; lookupsError?: string }): boolean {
  const wrong = result.lookups?.results.filter(
    (row) => row.wrongAnswers > 0 || row.missingAfter > 0,
  );
  for (const row of wrong ?? [])
    process.stdout.write(
      `BENCH FAILED: lookups ${row.backend}: ${row.wrongAnswers} wrong answers, ${row.missingAfter} tokens missing after the backfill.\n`,
    );
  if (result.lookupsError !== undefined)
    process.stdout.write(`BENCH FAILED: lookups: ${result.lookupsError}.\n`);
  return result.lookupsError !== undefined || (wrong?.length ?? 0) > 0;
}

const PHASES = ["abuse", "lookups", "fields", "floor", "rewrap", "workers"] as const;
/** The phases `BENCH_ONLY` can run alone. */
type Phase = (typeof PHASES)[number];

function isPhase(name: string): name is Phase {
  return (PHASES as readonly string[]).includes(name);
}

async function main(): Promise<number> {
  const only = process.env.BENCH_ONLY;
  if (only !== undefined && !isPhase(only)) {
    throw new Error(
      `BENCH_ONLY=${only}: the phases that run alone are ${PHASES.map((name) => `"${name}"`).join(", ")}`,
    );
  }
  const durationMs = parseDurationMs(process.env.BENCH_DURATION ?? "10s");
  const fieldDurationMs = parseDurationMs(
    process.env.BENCH_FIELD_DURATION ?? goDuration(durationMs),
  );
  const connCandidates = (process.env.BENCH_CONNS ?? "1,2,4,8")
    .split(",")
    .map((entry) => Number(entry.trim()))
    .filter((entry) => Number.isInteger(entry) && entry > 0);
  const fieldConcurrency = Number(process.env.BENCH_FIELD_CONCURRENCY ?? "16");
  const quietWaitMs = parseDurationMs(process.env.BENCH_QUIET_WAIT ?? "20s");

  let kmsload: string;
  try {
    kmsload = ensureKmsload();
  } catch (error) {
    process.stderr.write(
      `BENCH FAILED: cannot build the native load client kmsload: ${error instanceof Error ? error.message : String(error)}\n`,
    );
    return 1;
  }
  const rebuilt = ensureDaemonBuilt();
  const machine = { ...machineInfo(), distRebuilt: rebuilt, daemonNodeFlags: daemonNodeFlags() };
  if (only !== undefined) return phaseOnly(only, kmsload, machine, quietWaitMs);

  log(`starting daemon (${relative(REPO_ROOT, DAEMON_MAIN)})`);
  const daemon = await DaemonProcess.start();
  const memory: Record<string, MemorySample> = {};
  const kms: KmsRow[] = [];
  let field: FieldLoadReport | undefined;
  let fieldError: string | undefined;
  let fieldDaemonCpuS: number | undefined;
  let fieldMachineBusyCores: number | undefined;
  let engineFields: EngineFieldsReport | undefined;
  let engineFieldsError: string | undefined;
  let rewrap: RewrapReport | undefined;
  let rewrapError: string | undefined;
  let lookupsPhase: { lookups?: LookupReport; lookupsError?: string } = {};
  let comparePhase: { fieldCompare?: FieldCompareReport; fieldCompareError?: string } = {};
  let daemonExit: number | null = null;
  try {
    memory["idle (after start)"] = readMemory(daemon.pid);
    const warmupMs = Math.min(3000, durationMs);
    log(`warm-up: roundtrip c=16 for ${goDuration(warmupMs)}`);
    await runKmsload(kmsload, daemon.socketPath, {
      op: "roundtrip",
      concurrency: 16,
      conns: 2,
      size: SIZE,
      durationMs: warmupMs,
    });
    memory["after warm-up"] = readMemory(daemon.pid);

    for (const concurrency of CONCURRENCIES) {
      const candidates =
        concurrency === 1 ? [1] : [...new Set(connCandidates.map((n) => Math.min(n, concurrency)))];
      const sweep: KmsRow[] = [];
      for (const conns of candidates) {
        const flags = { op: "roundtrip", concurrency, conns, size: SIZE, durationMs } as const;
        sweep.push(await measureKms(kmsload, daemon, flags, true, quietWaitMs));
      }
      kms.push(...sweep);
      const best = sweep.reduce((a, b) => (b.report.calls_per_s > a.report.calls_per_s ? b : a));
      for (const op of ["encrypt", "decrypt"] as const) {
        const flags = { op, concurrency, conns: best.conns, size: SIZE, durationMs };
        kms.push(await measureKms(kmsload, daemon, flags, false, quietWaitMs));
      }
    }
    memory["after KMS load"] = readMemory(daemon.pid);

    log(`field service: Seal/Open at 1, 10, 100 records per call, ${fieldConcurrency} in flight`);
    await waitForQuiet(quietWaitMs);
    const cpuBefore = readCpuSeconds(daemon.pid);
    const machineBefore = readMachineCpu();
    const fieldStarted = Date.now();
    try {
      field = JSON.parse(
        await runFieldLoad(daemon.socketPath, fieldDurationMs, [
          "--concurrency",
          String(fieldConcurrency),
          "--batches",
          "1,10,100",
          "--fields",
          "10",
          "--value-bytes",
          "100",
        ]),
      ) as FieldLoadReport;
      for (const row of field.results) {
        log(
          `${row.op} ×${row.batchRecords}: ${row.recordsPerS} records/s, ${row.fieldsPerS} fields/s, ` +
            `p50 ${row.p50Us} µs, p99 ${row.p99Us} µs, errors ${row.errors}`,
        );
      }
    } catch (error) {
      fieldError = error instanceof Error ? error.message : String(error);
      log(`field load failed: ${fieldError}`);
    }
    fieldDaemonCpuS = Math.round((readCpuSeconds(daemon.pid) - cpuBefore) * 100) / 100;
    const fieldWallS = (Date.now() - fieldStarted) / 1000;
    fieldMachineBusyCores =
      Math.round((100 * (readMachineCpu().busyS - machineBefore.busyS)) / fieldWallS) / 100;
    memory["after field load"] = readMemory(daemon.pid);

    log(
      "field layer: engine (secretbox, kms v2) and field service, records of 10 fields × 100 bytes",
    );
    await waitForQuiet(quietWaitMs);
    try {
      engineFields = JSON.parse(
        await runBenchClient("engine-fields.ts", daemon.socketPath, fieldDurationMs, []),
      ) as EngineFieldsReport;
    } catch (error) {
      engineFieldsError = error instanceof Error ? error.message : String(error);
      log(`field layer load failed: ${engineFieldsError}`);
    }

    log("rewrap: SQLite and PostgreSQL, engine and field-service routes");
    await waitForQuiet(quietWaitMs);
    try {
      rewrap = await measureRewrap(
        daemon.socketPath,
        Number(process.env.BENCH_REWRAP_RECORDS ?? "10000"),
        200,
      );
      if (rewrap.results.some((row) => row.remaining !== 0))
        rewrapError = "records were left under the old key";
    } catch (error) {
      rewrapError = error instanceof Error ? error.message : String(error);
      log(`rewrap bench failed: ${rewrapError}`);
    }
    lookupsPhase = await runLookupsPhase(daemon.socketPath, quietWaitMs);
    comparePhase = await runFieldComparePhase(quietWaitMs);
  } finally {
    daemonExit = await daemon.stop("SIGTERM");
  }
  const floorPhase = await runKmsFloorPhase(kmsload, quietWaitMs);
  const { abuse, abuseError } = await runAbusePhase(kmsload, machine, quietWaitMs);

  const mainRoundtrip = kms
    .filter((row) => row.op === "roundtrip" && row.concurrency === 64)
    .reduce<KmsRow | undefined>(
      (best, row) =>
        best === undefined || row.report.calls_per_s > best.report.calls_per_s ? row : best,
      undefined,
    );
  const minimum = {
    roundtripC64: mainRoundtrip?.report.calls_per_s,
    required: MINIMUM_ROUNDTRIP_C64,
    met: (mainRoundtrip?.report.calls_per_s ?? 0) >= MINIMUM_ROUNDTRIP_C64,
  };
  const kmsErrors = kms.reduce((sum, row) => sum + row.report.errors, 0);
  const fieldErrors =
    (field?.errors ?? 0) +
    (engineFields?.results.reduce((sum, row) => sum + row.mismatches, 0) ?? 0);
  const results = {
    machine,
    settings: {
      durationMs,
      fieldDurationMs,
      size: SIZE,
      concurrencies: CONCURRENCIES,
      connCandidates,
      fieldConcurrency,
      quietWaitMs,
    },
    kms,
    field,
    fieldError,
    fieldDaemonCpuS,
    fieldMachineBusyCores,
    engineFields,
    engineFieldsError,
    rewrap,
    rewrapError,
    memory,
    daemonExitCode: daemonExit,
    minimum,
    errors: { kms: kmsErrors, field: fieldErrors },
    abuse,
    abuseError,
    ...lookupsPhase,
    ...comparePhase,
    ...floorPhase,
  };
  mkdirSync(RESULTS_DIR, { recursive: true });
  writeFileSync(join(RESULTS_DIR, "latest.json"), `${JSON.stringify(results, null, 2)}\n`);
  updateReadme(README, results as unknown as BenchResults);
  const summary = markdown({ ...results, durationMs });
  writeFileSync(join(RESULTS_DIR, "latest.md"), summary);
  process.stdout.write(`${summary}\n`);

  let failed = false;
  if (!minimum.met) {
    process.stdout.write(
      `BELOW MINIMUM: KMS v2 roundtrip at concurrency 64 reached ${Math.round(minimum.roundtripC64 ?? 0)} calls/s; the project's minimum is ${MINIMUM_ROUNDTRIP_C64} calls/s.\n`,
    );
  }
  if (
    kmsErrors > 0 ||
    fieldErrors > 0 ||
    fieldError !== undefined ||
    engineFieldsError !== undefined ||
    rewrapError !== undefined
  ) {
    process.stdout.write(
      `BENCH FAILED: ${kmsErrors} KMS errors, ${fieldErrors} field-service errors${fieldError === undefined ? "" : `, field load client failed: ${fieldError}`}${rewrapError === undefined ? "" : `, rewrap: ${rewrapError}`}.\n`,
    );
    failed = true;
  }
  if (daemonExit !== 0) {
    process.stdout.write(`BENCH FAILED: the daemon exited with ${daemonExit} after SIGTERM.\n`);
    failed = true;
  }
  if (abuseFailed(abuse, abuseError)) failed = true;
  if (lookupsFailed(lookupsPhase)) failed = true;
  if (fieldCompareFailed(comparePhase)) failed = true;
  if (kmsFloorFailed(floorPhase)) failed = true;
  return failed ? 1 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(
      `BENCH FAILED: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exitCode = 1;
  },
);
