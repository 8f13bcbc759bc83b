// CPU profile of the daemon under load, aggregated by function and by category.
//
//   node --import tsx bench/profile.ts                 # profile under kmsload roundtrip c=64
//   node --import tsx bench/profile.ts --load field    # ... under field-service Seal/Open load
//   node --import tsx bench/profile.ts some.cpuprofile # only analyse an existing profile
//
// Options: --duration (default BENCH_DURATION or 10s), --concurrency (64), --conns (2),
// --interval (sampling interval µs, default 250), --top (rows per table, default 30).
// The daemon runs with `node --cpu-prof`; only samples taken while the load ran are counted
// (start-up and shutdown are cut off). Writes bench/results/profile-<load>.{json,md}.
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { parseArgs } from "node:util";
import type { FieldLoadReport } from "./field-load.js";
import {
  BIN_DIR,
  DaemonProcess,
  ensureDaemonBuilt,
  ensureKmsload,
  goDuration,
  log,
  parseDurationMs,
  REPO_ROOT,
  RESULTS_DIR,
  readCpuSeconds,
  runFieldLoad,
  runKmsload,
} from "./lib.js";

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** Categories, first match wins, tested against a frame's function name and URL. */
const CATEGORIES: { name: string; test: (frame: CallFrame) => boolean }[] = [
  { name: "idle", test: (f) => f.functionName === "(idle)" },
  { name: "GC", test: (f) => f.functionName === "(garbage collector)" },
  {
    name: "V8/native (program)",
    test: (f) => f.functionName === "(program)" || f.functionName === "(root)",
  },
  { name: "libsodium/secretbox", test: (f) => /libsodium|^wasm:/.test(f.url) },
  { name: "protobuf (de)serialization", test: (f) => /protobufjs|proto-loader/.test(f.url) },
  { name: "grpc-js", test: (f) => f.url.includes("@grpc/grpc-js") },
  { name: "http2 framing (node:http2)", test: (f) => /^node:(internal\/)?http2/.test(f.url) },
  {
    name: "node:crypto HKDF/HMAC/randomBytes",
    test: (f) => /^node:(internal\/)?crypto/.test(f.url),
  },
  { name: "metrics (prom-client)", test: (f) => f.url.includes("prom-client") },
  { name: "logging (pino)", test: (f) => f.url.includes("/pino") },
  {
    name: "our code",
    test: (f) =>
      /\/(dist\/)?(src|providers)\/[^/].*\.(js|ts)$/.test(f.url) && !/node_modules/.test(f.url),
  },
  {
    name: "node net/streams/events",
    test: (f) =>
      /^node:(net|stream|events|internal\/(stream_base_commons|streams|net|events|event_target))/.test(
        f.url,
      ),
  },
  {
    name: "node event loop (timers/ticks/promises)",
    test: (f) => /^node:internal\/(timers|process\/task_queues|async_hooks)/.test(f.url),
  },
  { name: "node buffer", test: (f) => /^node:(internal\/)?buffer/.test(f.url) },
  { name: "node internals (other)", test: (f) => f.url.startsWith("node:") },
  { name: "other dependencies", test: (f) => f.url.includes("node_modules") },
  { name: "native builtins (no URL)", test: () => true },
];

// Generic leaves (native builtins, Buffer helpers, misc node internals) are charged to the
// nearest caller of a more telling category in the "attributed" table.
const TRANSPARENT = new Set(["native builtins (no URL)", "node buffer", "node internals (other)"]);

/** Parts of a call, by stack membership (a sample counts if any frame matches). */
const PHASES: { name: string; test: (frame: CallFrame) => boolean }[] = [
  {
    name: "our unary handler (unary-call.js), incl. what it calls",
    test: (f) => /\/server\/unary-call\.(js|ts)$/.test(f.url),
  },
  {
    name: "↳ seal/open (src/crypto/sealed)",
    test: (f) => /\/crypto\/sealed\.(js|ts)$/.test(f.url),
  },
  { name: "  ↳ hkdfSync (deriveRecordKey)", test: (f) => f.functionName === "hkdfSync" },
  {
    name: "  ↳ randomBytes (nonce)",
    test: (f) => f.functionName === "randomBytes" && f.url.startsWith("node:"),
  },
  { name: "  ↳ libsodium secretbox", test: (f) => /libsodium|^wasm:/.test(f.url) },
  {
    name: "↳ grpc-js respond (serialize + send answer)",
    test: (f) => f.functionName === "respond" && f.url.includes("grpc-js/build/src/server.js"),
  },
  { name: "↳ metrics (observeCall)", test: (f) => f.functionName === "observeCall" },
  {
    name: "request deserialization (protobufjs)",
    test: (f) => f.functionName === "deserialize" && /proto-loader/.test(f.url),
  },
  {
    name: "response serialization (protobufjs)",
    test: (f) => f.functionName === "serialize" && /proto-loader/.test(f.url),
  },
  { name: "GC", test: (f) => f.functionName === "(garbage collector)" },
];

function categoryOf(frame: CallFrame): string {
  return (CATEGORIES.find((category) => category.test(frame)) ?? { name: "?" }).name;
}

function shortUrl(url: string): string {
  const modules = url.lastIndexOf("node_modules/");
  if (modules >= 0) return url.slice(modules + "node_modules/".length);
  const root = url.indexOf(REPO_ROOT);
  if (root >= 0) return url.slice(root + REPO_ROOT.length + 1);
  return url.replace(/^file:\/\//, "");
}

function frameKey(frame: CallFrame): string {
  const where = frame.url === "" ? "" : ` ${shortUrl(frame.url)}:${frame.lineNumber + 1}`;
  return `${frame.functionName || "(anonymous)"}${where}`;
}

/** Aggregated view of a profile. */
export interface ProfileSummary {
  file: string;
  windowMs: [number, number] | undefined;
  totalMs: number;
  busyMs: number;
  categoriesSelf: { category: string; ms: number; pctBusy: number }[];
  categoriesAttributed: { category: string; ms: number; pctBusy: number }[];
  phases: { phase: string; ms: number; pctBusy: number }[];
  categoriesInclusive: { category: string; ms: number; pctBusy: number }[];
  functionsSelf: { fn: string; category: string; ms: number; pctBusy: number }[];
  functionsInclusive: { fn: string; category: string; ms: number; pctBusy: number }[];
}

/** Aggregates self and inclusive time by function and category, within a time window. */
export function summarize(
  file: string,
  profile: CpuProfile,
  windowMs?: [number, number],
  top = 30,
): ProfileSummary {
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const node of profile.nodes) {
    byId.set(node.id, node);
    for (const child of node.children ?? []) parent.set(child, node.id);
  }
  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  const categorySelf = new Map<string, number>();
  const categoryInclusive = new Map<string, number>();
  const categoryOfKey = new Map<string, string>();
  const categoryAttributed = new Map<string, number>();
  const phaseTime = new Map<string, number>();
  const add = (map: Map<string, number>, key: string, value: number): void => {
    map.set(key, (map.get(key) ?? 0) + value);
  };
  let elapsedUs = 0;
  let totalUs = 0;
  let idleUs = 0;
  for (let index = 0; index < profile.samples.length; index++) {
    const deltaUs = profile.timeDeltas[index] ?? 0;
    elapsedUs += deltaUs;
    if (
      windowMs !== undefined &&
      (elapsedUs < windowMs[0] * 1000 || elapsedUs > windowMs[1] * 1000)
    )
      continue;
    // The sample's weight is the time until the next sample (V8's own convention).
    const weightUs = profile.timeDeltas[index + 1] ?? deltaUs;
    const leaf = byId.get(profile.samples[index] as number);
    if (leaf === undefined) continue;
    totalUs += weightUs;
    const leafKey = frameKey(leaf.callFrame);
    const leafCategory = categoryOf(leaf.callFrame);
    categoryOfKey.set(leafKey, leafCategory);
    add(self, leafKey, weightUs);
    add(categorySelf, leafCategory, weightUs);
    if (leafCategory === "idle") {
      idleUs += weightUs;
      continue;
    }
    const seenKeys = new Set<string>();
    const seenCategories = new Set<string>();
    const seenPhases = new Set<string>();
    let attributed: string | undefined;
    for (let id: number | undefined = leaf.id; id !== undefined; id = parent.get(id)) {
      const node = byId.get(id) as ProfileNode;
      const key = frameKey(node.callFrame);
      const category = categoryOf(node.callFrame);
      categoryOfKey.set(key, category);
      if (!seenKeys.has(key)) {
        seenKeys.add(key);
        add(inclusive, key, weightUs);
      }
      if (!seenCategories.has(category)) {
        seenCategories.add(category);
        add(categoryInclusive, category, weightUs);
      }
      if (attributed === undefined && !TRANSPARENT.has(category)) attributed = category;
      for (const phase of PHASES) {
        if (!seenPhases.has(phase.name) && phase.test(node.callFrame)) {
          seenPhases.add(phase.name);
          add(phaseTime, phase.name, weightUs);
        }
      }
    }
    add(categoryAttributed, attributed ?? leafCategory, weightUs);
  }
  const busyUs = totalUs - idleUs;
  const pct = (us: number): number => Math.round((1000 * us) / Math.max(1, busyUs)) / 10;
  const ms = (us: number): number => Math.round(us / 100) / 10;
  const sorted = (map: Map<string, number>): [string, number][] =>
    [...map.entries()].sort((a, b) => b[1] - a[1]);
  const skip = new Set(["idle", "V8/native (program)"]);
  return {
    file,
    windowMs,
    totalMs: ms(totalUs),
    busyMs: ms(busyUs),
    categoriesSelf: sorted(categorySelf).map(([category, us]) => ({
      category,
      ms: ms(us),
      pctBusy: category === "idle" ? Number.NaN : pct(us),
    })),
    categoriesAttributed: sorted(categoryAttributed).map(([category, us]) => ({
      category,
      ms: ms(us),
      pctBusy: pct(us),
    })),
    phases: PHASES.map((phase) => phaseTime.get(phase.name) ?? 0).map((us, index) => ({
      phase: (PHASES[index] as { name: string }).name,
      ms: ms(us),
      pctBusy: pct(us),
    })),
    categoriesInclusive: sorted(categoryInclusive)
      .filter(([category]) => !skip.has(category))
      .map(([category, us]) => ({ category, ms: ms(us), pctBusy: pct(us) })),
    functionsSelf: sorted(self)
      .filter(([key]) => categoryOfKey.get(key) !== "idle")
      .slice(0, top)
      .map(([fn, us]) => ({
        fn,
        category: categoryOfKey.get(fn) ?? "?",
        ms: ms(us),
        pctBusy: pct(us),
      })),
    functionsInclusive: sorted(inclusive)
      .filter(([key]) => !skip.has(categoryOfKey.get(key) ?? "") && !key.startsWith("(root)"))
      .slice(0, top)
      .map(([fn, us]) => ({
        fn,
        category: categoryOfKey.get(fn) ?? "?",
        ms: ms(us),
        pctBusy: pct(us),
      })),
  };
}

/** Markdown rendering of a summary. */
export function summaryMarkdown(summary: ProfileSummary, heading: string, notes: string[]): string {
  const lines = [`# ${heading}`, "", ...notes];
  lines.push(
    "",
    `Profile ${basename(summary.file)}: ${summary.totalMs} ms sampled in the load window, ` +
      `${summary.busyMs} ms busy (not idle). Percentages are of busy time.`,
    "",
    "## Self time by category",
    "",
    "| category | self ms | % busy |",
    "|---|---:|---:|",
  );
  for (const row of summary.categoriesSelf) {
    lines.push(
      `| ${row.category} | ${row.ms} | ${Number.isNaN(row.pctBusy) ? "—" : row.pctBusy} |`,
    );
  }
  lines.push(
    "",
    "## Busy time by category, generic leaves charged to their caller",
    "",
    "Native builtins, Buffer helpers and misc node internals are charged to the nearest caller",
    "of another category (e.g. a Buffer copy inside grpc-js counts as grpc-js).",
    "",
    "| category | ms | % busy |",
    "|---|---:|---:|",
  );
  for (const row of summary.categoriesAttributed) {
    lines.push(`| ${row.category} | ${row.ms} | ${row.pctBusy} |`);
  }
  lines.push(
    "",
    "## Parts of a call (inclusive: the sample's stack contains a matching frame)",
    "",
    "| part | ms | % busy |",
    "|---|---:|---:|",
  );
  for (const row of summary.phases) lines.push(`| ${row.phase} | ${row.ms} | ${row.pctBusy} |`);
  lines.push(
    "",
    "## Inclusive time by category (stack contains a frame of the category)",
    "",
    "| category | inclusive ms | % busy |",
    "|---|---:|---:|",
  );
  for (const row of summary.categoriesInclusive) {
    lines.push(`| ${row.category} | ${row.ms} | ${row.pctBusy} |`);
  }
  lines.push("", "## Top functions by self time", "", "| function | category | self ms | % busy |");
  lines.push("|---|---|---:|---:|");
  for (const row of summary.functionsSelf) {
    lines.push(`| \`${row.fn}\` | ${row.category} | ${row.ms} | ${row.pctBusy} |`);
  }
  lines.push(
    "",
    "## Top functions by inclusive time",
    "",
    "| function | category | incl. ms | % busy |",
  );
  lines.push("|---|---|---:|---:|");
  for (const row of summary.functionsInclusive) {
    lines.push(`| \`${row.fn}\` | ${row.category} | ${row.ms} | ${row.pctBusy} |`);
  }
  lines.push("");
  return lines.join("\n");
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      load: { type: "string", default: "kms" },
      op: { type: "string", default: "roundtrip" },
      duration: { type: "string", default: process.env.BENCH_DURATION ?? "10s" },
      concurrency: { type: "string", default: "64" },
      conns: { type: "string", default: "2" },
      batches: { type: "string", default: "10" },
      interval: { type: "string", default: "250" },
      top: { type: "string", default: "30" },
    },
  });
  const top = Number(values.top);
  const existing = positionals[0];
  if (existing !== undefined) {
    const profile = JSON.parse(readFileSync(existing, "utf8")) as CpuProfile;
    const summary = summarize(existing, profile, undefined, top);
    process.stdout.write(summaryMarkdown(summary, `CPU profile ${basename(existing)}`, []));
    return;
  }

  const durationMs = parseDurationMs(values.duration);
  const load = values.load === "field" ? "field" : "kms";
  const kmsload = ensureKmsload();
  ensureDaemonBuilt();
  const profileDirectory = join(
    BIN_DIR,
    "..",
    ".prof",
    new Date().toISOString().replace(/[:.]/g, "-"),
  );
  mkdirSync(profileDirectory, { recursive: true });
  const spawnedAt = Date.now();
  const daemon = await DaemonProcess.start({
    nodeFlags: [
      "--cpu-prof",
      `--cpu-prof-dir=${profileDirectory}`,
      `--cpu-prof-interval=${values.interval}`,
    ],
  });
  let window: [number, number];
  const notes: string[] = [];
  try {
    const warmupMs = Math.min(2000, durationMs);
    await runKmsload(kmsload, daemon.socketPath, {
      op: "roundtrip",
      concurrency: 16,
      conns: 2,
      size: 32,
      durationMs: warmupMs,
    });
    const cpuBefore = readCpuSeconds(daemon.pid);
    const loadStart = Date.now() - spawnedAt;
    if (load === "kms") {
      const op = values.op as "roundtrip" | "encrypt" | "decrypt" | "status";
      const flags = {
        op,
        concurrency: Number(values.concurrency),
        conns: Number(values.conns),
        size: 32,
        durationMs,
      };
      log(
        `profiling under kmsload ${op} c=${flags.concurrency} conns=${flags.conns} for ${goDuration(durationMs)}`,
      );
      const { report, argv } = await runKmsload(kmsload, daemon.socketPath, flags);
      notes.push(
        `Load: \`kmsload ${argv.slice(2).join(" ")}\` → ${report.calls_per_s} calls/s (under the profiler), ` +
          `p50 ${report.p50_us} µs, p99 ${report.p99_us} µs, errors ${report.errors}.`,
      );
    } else {
      log(
        `profiling under field-service load (batches ${values.batches}) for 2 × ${goDuration(durationMs)}`,
      );
      const line = await runFieldLoad(daemon.socketPath, durationMs, [
        "--warmup",
        "0s",
        "--batches",
        values.batches,
      ]);
      const report = JSON.parse(line.split("\n").pop() ?? "{}") as FieldLoadReport;
      const phases = (report.results ?? []).map(
        (row) =>
          `${row.op} ×${row.batchRecords}: ${row.recordsPerS} records/s, ${row.fieldsPerS} fields/s, errors ${row.errors}`,
      );
      notes.push(
        `Load: bench/field-load.ts --batches ${values.batches} --concurrency ${report.concurrency} ` +
          `(${report.fieldsPerRecord} fields × ${report.valueBytes} B) → ${phases.join("; ")} (under the profiler).`,
      );
    }
    const loadEnd = Date.now() - spawnedAt;
    const cpuS = readCpuSeconds(daemon.pid) - cpuBefore;
    notes.push(
      `Daemon CPU during the load: ${cpuS.toFixed(2)} s over ${((loadEnd - loadStart) / 1000).toFixed(2)} s wall ` +
        `(${Math.round((100 * cpuS * 1000) / (loadEnd - loadStart))}% of one core, all threads).`,
    );
    // Profile time starts a little after spawn; cut a margin off both ends of the window.
    window = [loadStart + 200, loadEnd - 200];
  } finally {
    const code = await daemon.stop("SIGTERM");
    if (code !== 0) log(`daemon exited with ${code}`);
  }
  const file = readdirSync(profileDirectory).find((name) => name.endsWith(".cpuprofile"));
  if (file === undefined) throw new Error(`no .cpuprofile written in ${profileDirectory}`);
  const path = join(profileDirectory, file);
  const profile = JSON.parse(readFileSync(path, "utf8")) as CpuProfile;
  const summary = summarize(path, profile, window, top);
  const name = load === "kms" ? `profile-kms-${values.op}` : "profile-field";
  mkdirSync(RESULTS_DIR, { recursive: true });
  writeFileSync(
    join(RESULTS_DIR, `${name}.json`),
    `${JSON.stringify({ notes, ...summary }, null, 2)}\n`,
  );
  const markdown = summaryMarkdown(summary, `Daemon CPU profile (${load} load)`, notes);
  writeFileSync(join(RESULTS_DIR, `${name}.md`), markdown);
  process.stdout.write(markdown);
  log(`profile kept at ${path}`);
}

main().catch((error: unknown) => {
  process.stderr.write(
    `profile: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exitCode = 1;
});
