// Lookups, for `npm run bench`: how fast the daemon computes lookup tokens, how fast rewrap
// backfills them on a populated store, and how long a search by value takes on a store of
// N records (default 100,000), on SQLite and PostgreSQL. Per backend: N people are stored with
// email and name sealed by the daemon but no lookup declared; then `lookup: [trim, lowercase]`
// is declared on email and rewrap computes the missing tokens (the backfill rate); then
// EncryptedStore.find searches by random addresses in another letter case (every search must
// return exactly its one record) and by addresses that are not stored.
// The daemon is the benchmark's own process; this process is its client.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FieldServiceClient } from "../src/fields/field-service-client.js";
import { openFieldLayer } from "../src/fields/open-field-layer.js";
import { EncryptedStore } from "../src/store/encrypted-store.js";
import { openRepository } from "../src/store/open-repository.js";
import { rewrap } from "../src/store/rewrap.js";
import { startPostgres } from "../test/support/postgres-server.js";
import { log } from "./lib.js";

const RESOURCE = "people";
const WORKSPACE = "ws-bench";
const TOKEN_BATCH = 100;
const TOKEN_CONCURRENCY = 8;
const SEARCHES = 1_000;
const MISSES = 200;

/** Lookup RPCs against the daemon. */
export interface TokenRate {
  valuesPerCall: number;
  concurrency: number;
  calls: number;
  tokensPerS: number;
  p50Ms: number;
  p99Ms: number;
}

/** One backend's backfill and search figures. */
export interface LookupRow {
  backend: string;
  records: number;
  backfillRecordsPerS: number;
  /** Records still without a primary-version token after the backfill (must be 0). */
  missingAfter: number;
  searches: number;
  hitP50Ms: number;
  hitP99Ms: number;
  missP50Ms: number;
  missP99Ms: number;
  /** Searches that did not return exactly the record searched for (must be 0). */
  wrongAnswers: number;
}

export interface LookupReport {
  tokens: TokenRate;
  results: LookupRow[];
}

const fieldMap = (email: string) =>
  `apiVersion: kms-envelope/v1\nkind: FieldMap\nresources:\n  - resource: ${RESOURCE}\n    route: field-service\n    fields:\n      email: ${email}\n      name: string\n`;

const address = (index: number) => `person.${index}@example.com`;

function percentileMs(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  const value = sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)] as number;
  return Math.round(value * 100) / 100;
}

/** Lookup calls of TOKEN_BATCH values, TOKEN_CONCURRENCY in flight, for `durationMs`. */
async function measureTokens(socketPath: string, durationMs: number): Promise<TokenRate> {
  const client = new FieldServiceClient({ socketPath, timeoutMs: 30_000 });
  const latencies: number[] = [];
  try {
    const values = Array.from(
      { length: TOKEN_BATCH },
      (_, index) => ` Person.${index}@Example.com`,
    );
    const query = {
      workspace: WORKSPACE,
      resource: RESOURCE,
      field: "email",
      normalizers: ["trim", "lowercase"] as const,
      values,
    };
    const started = performance.now();
    const deadline = started + durationMs;
    await Promise.all(
      Array.from({ length: TOKEN_CONCURRENCY }, async () => {
        while (performance.now() < deadline) {
          const t0 = performance.now();
          const answer = await client.lookup(query);
          latencies.push(performance.now() - t0);
          if (answer.tokens.length !== TOKEN_BATCH) throw new Error("Lookup lost values");
        }
      }),
    );
    const elapsedS = (performance.now() - started) / 1000;
    latencies.sort((a, b) => a - b);
    return {
      valuesPerCall: TOKEN_BATCH,
      concurrency: TOKEN_CONCURRENCY,
      calls: latencies.length,
      tokensPerS: Math.round((latencies.length * TOKEN_BATCH) / elapsedS),
      p50Ms: percentileMs(latencies, 0.5),
      p99Ms: percentileMs(latencies, 0.99),
    };
  } finally {
    client.close();
  }
}

async function measureBackend(
  backend: string,
  url: string,
  socketPath: string,
  maps: { plain: string; lookup: string },
  records: number,
): Promise<LookupRow> {
  const repository = await openRepository(url);
  try {
    const before = await openFieldLayer({ fieldMapPath: maps.plain, daemonSocket: socketPath });
    try {
      const store = new EncryptedStore({ repository, codec: before });
      for (let start = 0; start < records; start += 500) {
        await store.createMany(
          RESOURCE,
          Array.from({ length: Math.min(500, records - start) }, (_, offset) => ({
            id: `p-${String(start + offset).padStart(7, "0")}`,
            workspace: WORKSPACE,
            document: { email: address(start + offset), name: `Person ${start + offset}` },
          })),
        );
      }
    } finally {
      await before.close();
    }
    const codec = await openFieldLayer({ fieldMapPath: maps.lookup, daemonSocket: socketPath });
    try {
      const started = performance.now();
      const summary = await rewrap({ repository, codec, batchSize: 500 });
      const backfillS = (performance.now() - started) / 1000;
      const done = summary.resources[0]?.recordsRewrapped ?? 0;
      const missingAfter = await repository.countMissingTokens(RESOURCE, "email");

      const store = new EncryptedStore({ repository, codec });
      let wrongAnswers = 0;
      const search = async (value: string, expectedId: string | undefined) => {
        const t0 = performance.now();
        const found = await store.find(RESOURCE, { field: "email", value, workspace: WORKSPACE });
        const ms = performance.now() - t0;
        const right =
          expectedId === undefined
            ? found.length === 0
            : found.length === 1 && found[0]?.id === expectedId;
        if (!right) wrongAnswers++;
        return ms;
      };
      const hits: number[] = [];
      for (let n = 0; n < SEARCHES; n++) {
        const index = Math.floor(Math.random() * records);
        hits.push(
          await search(` ${address(index).toUpperCase()}`, `p-${String(index).padStart(7, "0")}`),
        );
      }
      const misses: number[] = [];
      for (let n = 0; n < MISSES; n++)
        misses.push(await search(`nobody.${n}@example.com`, undefined));
      hits.sort((a, b) => a - b);
      misses.sort((a, b) => a - b);
      const row: LookupRow = {
        backend,
        records,
        backfillRecordsPerS: Math.round(done / backfillS),
        missingAfter,
        searches: SEARCHES,
        hitP50Ms: percentileMs(hits, 0.5),
        hitP99Ms: percentileMs(hits, 0.99),
        missP50Ms: percentileMs(misses, 0.5),
        missP99Ms: percentileMs(misses, 0.99),
        wrongAnswers,
      };
      log(
        `lookups ${backend}: backfill ${row.backfillRecordsPerS} records/s; find p50 ${row.hitP50Ms} ms, p99 ${row.hitP99Ms} ms`,
      );
      return row;
    } finally {
      await codec.close();
    }
  } finally {
    await repository.close();
  }
}

/** Measures token rate, backfill and search on SQLite and PostgreSQL against `socketPath`. */
export async function measureLookups(
  socketPath: string,
  records: number,
  tokenDurationMs: number,
): Promise<LookupReport> {
  const tokens = await measureTokens(socketPath, tokenDurationMs);
  log(`lookups: ${tokens.tokensPerS} tokens/s through the daemon`);
  const directory = await mkdtemp(join(tmpdir(), "kmse-bench-lookups-"));
  const postgres = await startPostgres({ durable: true });
  try {
    const maps = { plain: join(directory, "plain.yaml"), lookup: join(directory, "lookup.yaml") };
    await writeFile(maps.plain, fieldMap("string"));
    await writeFile(maps.lookup, fieldMap("{ type: string, lookup: [trim, lowercase] }"));
    const results = [
      await measureBackend(
        "sqlite",
        `sqlite://${join(directory, "store.db")}`,
        socketPath,
        maps,
        records,
      ),
      await measureBackend(
        "postgres",
        postgres.tcpUrl(await postgres.createDatabase()),
        socketPath,
        maps,
        records,
      ),
    ];
    return { tokens, results };
  } finally {
    await postgres.stop();
    await rm(directory, { recursive: true, force: true });
  }
}

/** The Markdown section of the results file. */
export function lookupsSection(report: LookupReport | undefined, error?: string): string[] {
  const lines = ["## Lookups", ""];
  if (report === undefined) return [...lines, `Not measured: ${error ?? "see latest.json"}.`, ""];
  const { tokens } = report;
  lines.push(
    `Tokens through the daemon: ${tokens.tokensPerS.toLocaleString("en-US")} tokens/s (Lookup calls of ` +
      `${tokens.valuesPerCall} values, ${tokens.concurrency} in flight, p50 ${tokens.p50Ms} ms, p99 ${tokens.p99Ms} ms per call; ` +
      "one token per loaded master-key version, here one).",
    "",
    "Per backend: records with email and name sealed by the daemon, then `lookup: [trim, lowercase]` " +
      "declared on email and the missing tokens backfilled by rewrap (500 records per transaction), then " +
      `${SEARCHES.toLocaleString("en-US")} searches for random stored addresses in upper case with a leading ` +
      `space (EncryptedStore.find: Lookup call, index query, read, Open call) and ${MISSES} for addresses not stored.`,
    "",
    "| backend | records | backfill records/s | find p50 ms | find p99 ms | miss p50 ms | miss p99 ms | wrong answers | missing tokens after |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
  );
  for (const row of report.results) {
    lines.push(
      `| ${row.backend} | ${row.records.toLocaleString("en-US")} | ${row.backfillRecordsPerS.toLocaleString("en-US")} | ${row.hitP50Ms} | ${row.hitP99Ms} | ${row.missP50Ms} | ${row.missP99Ms} | ${row.wrongAnswers} | ${row.missingAfter} |`,
    );
  }
  lines.push("");
  return lines;
}
