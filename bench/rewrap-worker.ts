// Rewrap at scale, for `BENCH_ONLY=rewrap npm run bench`: records/s of one rewrap on SQLite and
// of shared rewrap on PostgreSQL with one and with two workers, each worker its own
// `kms-envelope rewrap --shared` process (the built CLI), after a secretbox key rotation (engine
// route, in-process crypto). Rounds alternate the contenders, since the machine's CPU is shared
// with other work; medians are reported. PostgreSQL is a temporary loopback cluster with its
// default durability, on the same cores as the workers: the 2-worker/1-worker ratio is bounded
// by that.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { openFieldLayer } from "../src/fields/open-field-layer.js";
import { openRepository } from "../src/store/open-repository.js";
import { type RewrapSummary, rewrap } from "../src/store/rewrap.js";
import { startPostgres } from "../test/support/postgres-server.js";
import { median } from "./kms-floor.js";
import { log, REPO_ROOT, readMachineCpu } from "./lib.js";
import { secretboxConfig } from "./rewrap.js";

/** Medians over the rounds, in records/s. */
export interface RewrapWorkersReport {
  records: number;
  batchSize: number;
  rounds: number;
  sqlite: number;
  postgresOneWorker: number;
  postgresTwoWorkers: number;
  /** postgresTwoWorkers / postgresOneWorker. */
  twoToOne: number;
  /**
   * Cores the whole machine kept busy during the PostgreSQL runs (workers, database, anything
   * else), beside the cores it has: what a second worker had left to use.
   */
  busyCores: { one: number; two: number; of: number };
  /** Records left under the old key after any run (must be 0). */
  remaining: number;
}

const RESOURCE = "credentials";
const CLI = join(REPO_ROOT, "dist/src/cli/main.js");

/** A store at `url` with `records` records under one key, and a config with a new key first. */
async function rotatedStore(
  url: string,
  fieldMap: string,
  config: string,
  records: number,
): Promise<void> {
  const oldKey = randomBytes(32).toString("base64");
  await writeFile(config, secretboxConfig([oldKey]));
  const repository = await openRepository(url);
  const codec = await openFieldLayer({ fieldMapPath: fieldMap, encryptionConfigPath: config });
  try {
    for (let start = 0; start < records; start += 1000) {
      const batch = Array.from({ length: Math.min(1000, records - start) }, (_, offset) => ({
        id: `cred-${String(start + offset).padStart(7, "0")}`,
        workspace: "ws",
        document: { name: "n", secrets: { token: randomBytes(24).toString("base64") } },
      }));
      const sealed = await codec.seal(RESOURCE, batch);
      await repository.insert(
        RESOURCE,
        sealed.map((record) => ({ ...record, subjectId: null, workspace: "ws" })),
      );
    }
  } finally {
    await codec.close();
    await repository.close();
  }
  await writeFile(config, secretboxConfig([randomBytes(32).toString("base64"), oldKey]));
}

/** One `rewrap --shared` process; resolves with its JSON summary. */
function workerProcess(args: string[]): Promise<RewrapSummary> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, "rewrap", "--shared", "--json", ...args], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.once("exit", (code) => {
      if (code === 0) resolve(JSON.parse(stdout) as RewrapSummary);
      else reject(new Error(`rewrap worker exited ${code}: ${stderr.trim().split("\n").at(-1)}`));
    });
  });
}

/** Measures SQLite, PostgreSQL with one worker process and with two, alternating. */
export async function measureRewrapWorkers(
  records: number,
  batchSize: number,
  rounds: number,
): Promise<RewrapWorkersReport> {
  const directory = await mkdtemp(join(tmpdir(), "kmse-bench-rewrap-workers-"));
  const postgres = await startPostgres({ durable: true });
  const fieldMap = join(directory, "map.yaml");
  await writeFile(
    fieldMap,
    `apiVersion: kms-envelope/v1\nkind: FieldMap\nresources:\n  - resource: ${RESOURCE}\n    route: engine\n    fields:\n      secrets: json\n`,
  );
  const rates: Record<"sqlite" | "one" | "two", number[]> = { sqlite: [], one: [], two: [] };
  const busy: Record<"one" | "two", number[]> = { one: [], two: [] };
  let remaining = 0;
  try {
    for (let round = 1; round <= rounds; round++) {
      const config = join(directory, `config-${round}.yaml`);
      const sqliteUrl = `sqlite://${join(directory, `store-${round}.db`)}`;
      await rotatedStore(sqliteUrl, fieldMap, config, records);
      const repository = await openRepository(sqliteUrl);
      const codec = await openFieldLayer({ fieldMapPath: fieldMap, encryptionConfigPath: config });
      try {
        const summary = await rewrap({ repository, codec, batchSize });
        rates.sqlite.push(Math.round(records / (summary.elapsedMs / 1000)));
        remaining += summary.resources[0]?.remaining ?? 0;
      } finally {
        await codec.close();
        await repository.close();
      }
      for (const workers of [1, 2] as const) {
        const url = postgres.tcpUrl(await postgres.createDatabase());
        await rotatedStore(url, fieldMap, config, records);
        const flags = [
          ...["--store", url, "--fields", fieldMap, "--encryption-config", config],
          ...["--batch-size", String(batchSize)],
        ];
        const cpuBefore = readMachineCpu();
        const startedAt = performance.now();
        const summaries = await Promise.all(
          Array.from({ length: workers }, (_, index) =>
            workerProcess([...flags, "--worker-id", `bench-${index}`]),
          ),
        );
        // Each worker times its own run, from after its start-up: the slowest one is the run.
        const seconds = Math.max(...summaries.map((summary) => summary.elapsedMs)) / 1000;
        const contender = workers === 1 ? "one" : "two";
        rates[contender].push(Math.round(records / seconds));
        busy[contender].push(
          (readMachineCpu().busyS - cpuBefore.busyS) / ((performance.now() - startedAt) / 1000),
        );
        remaining += Math.max(...summaries.map((summary) => summary.resources[0]?.remaining ?? 0));
      }
      log(
        `rewrap round ${round}: SQLite ${rates.sqlite.at(-1)}, PostgreSQL 1 worker ${rates.one.at(-1)}, 2 workers ${rates.two.at(-1)} records/s`,
      );
    }
  } finally {
    await postgres.stop();
    await rm(directory, { recursive: true, force: true });
  }
  const one = median(rates.one);
  const two = median(rates.two);
  return {
    records,
    batchSize,
    rounds,
    sqlite: median(rates.sqlite),
    postgresOneWorker: one,
    postgresTwoWorkers: two,
    twoToOne: one === 0 ? 0 : Math.round((100 * two) / one) / 100,
    busyCores: {
      one: Math.round(100 * median(busy.one)) / 100,
      two: Math.round(100 * median(busy.two)) / 100,
      of: availableParallelism(),
    },
    remaining,
  };
}

/** The Markdown section of the results file. */
export function rewrapWorkersSection(report: RewrapWorkersReport | undefined): string[] {
  const lines = ["## Rewrap at scale (shared workers)", ""];
  if (report === undefined) return [...lines, "Not measured (see latest.json).", ""];
  return [
    ...lines,
    `${report.records.toLocaleString("en-US")} records per run, batches of ${report.batchSize}, engine route (secretbox rotation), medians of ${report.rounds} alternating rounds; PostgreSQL workers are separate \`rewrap --shared\` processes on the same cores as the database.`,
    "",
    "| store | workers | records/s |",
    "|---|---:|---:|",
    `| SQLite | 1 | ${report.sqlite.toLocaleString("en-US")} |`,
    `| PostgreSQL | 1 | ${report.postgresOneWorker.toLocaleString("en-US")} |`,
    `| PostgreSQL | 2 | ${report.postgresTwoWorkers.toLocaleString("en-US")} (${report.twoToOne}× one worker) |`,
    "",
    `Machine cores busy during the PostgreSQL runs (workers, database and the rest, from /proc/stat): ${report.busyCores.one} with one worker, ${report.busyCores.two} with two, of ${report.busyCores.of}.`,
    "",
  ];
}
