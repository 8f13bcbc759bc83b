// Rewrap throughput (records/s) of both store backends, for `npm run bench`: N credential
// records (the whole secret map as one encrypted value) are written, the key is rotated, and
// rewrap moves all of them in batches of versioned transactions. Two routes:
// - engine (secretbox): a real key rotation in the EncryptionConfiguration; crypto is in-process,
//   so the figure is mostly the store's own cost;
// - field service (daemon): one Open and one Seal round trip to the benchmark's daemon per
//   batch. That daemon has one master key, so the stamps are marked as written by an older key
//   id; rewrap then does exactly what it does after a real rotation (select, open, seal, write).
// PostgreSQL is a temporary cluster on loopback with its default durability (fsync on), like
// SQLite's synchronous=FULL; the run is measured in this process (wall clock).
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { FieldCodec } from "../src/fields/field-codec.js";
import { openFieldLayer } from "../src/fields/open-field-layer.js";
import { openRepository } from "../src/store/open-repository.js";
import type { RecordRepository } from "../src/store/repository.js";
import { type RewrapProgress, rewrap } from "../src/store/rewrap.js";
import { startPostgres } from "../test/support/postgres-server.js";
import { log } from "./lib.js";

/** One backend × route measurement. */
export interface RewrapRow {
  backend: string;
  route: string;
  records: number;
  batchSize: number;
  elapsedS: number;
  recordsPerS: number;
  /** Records not under the current writer after the run (must be 0). */
  remaining: number;
}

export interface RewrapReport {
  records: number;
  batchSize: number;
  results: RewrapRow[];
}

const RESOURCE = "credentials";
const SILENT: RewrapProgress = { begin() {}, advance() {}, end() {} };

function fieldMap(route: "engine" | "field-service"): string {
  return `apiVersion: kms-envelope/v1\nkind: FieldMap\nresources:\n  - resource: ${RESOURCE}\n    route: ${route}\n    fields:\n      secrets: json\n`;
}

/** An EncryptionConfiguration with these secretbox keys for the bench resource, first writes. */
export function secretboxConfig(keys: string[]): string {
  const list = keys.map(
    (secret, index) => `{ name: k${keys.length - index}, secret: "${secret}" }`,
  );
  return `apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [${RESOURCE}]\n    providers: [{ secretbox: { keys: [${list.join(", ")}] } }]\n`;
}

async function populate(
  repository: RecordRepository,
  codec: FieldCodec,
  records: number,
): Promise<void> {
  for (let start = 0; start < records; start += 500) {
    const batch = Array.from({ length: Math.min(500, records - start) }, (_, offset) => ({
      id: `cred-${String(start + offset).padStart(7, "0")}`,
      workspace: "ws-bench",
      document: {
        name: `cred-${start + offset}`,
        context: "bench",
        secrets: { token: randomBytes(24).toString("base64"), user: "svc" },
      },
    }));
    const sealed = await codec.seal(RESOURCE, batch);
    await repository.insert(
      RESOURCE,
      sealed.map((record) => ({
        id: record.id,
        subjectId: "bench",
        workspace: "ws-bench",
        document: record.document,
        stamps: record.stamps,
      })),
    );
  }
}

async function measure(
  backend: string,
  route: string,
  url: string,
  batchSize: number,
  prepare: (repository: RecordRepository) => Promise<FieldCodec>,
): Promise<RewrapRow> {
  const repository = await openRepository(url);
  try {
    const codec = await prepare(repository);
    try {
      const started = performance.now();
      const summary = await rewrap({
        repository,
        codec,
        batchSize,
        dryRun: false,
        progress: SILENT,
      });
      const elapsedS = (performance.now() - started) / 1000;
      const done = summary.resources[0]?.recordsRewrapped ?? 0;
      const row: RewrapRow = {
        backend,
        route,
        records: done,
        batchSize,
        elapsedS: Math.round(elapsedS * 100) / 100,
        recordsPerS: Math.round(done / elapsedS),
        remaining: summary.resources[0]?.remaining ?? -1,
      };
      log(
        `rewrap ${backend} ${route}: ${row.recordsPerS} records/s (${done} in ${row.elapsedS} s)`,
      );
      return row;
    } finally {
      await codec.close();
    }
  } finally {
    await repository.close();
  }
}

/** Measures rewrap on SQLite and PostgreSQL through both routes, against `socketPath`. */
export async function measureRewrap(
  socketPath: string,
  records: number,
  batchSize: number,
): Promise<RewrapReport> {
  const directory = await mkdtemp(join(tmpdir(), "kmse-bench-rewrap-"));
  const postgres = await startPostgres({ durable: true });
  try {
    const engineMap = join(directory, "engine-map.yaml");
    const serviceMap = join(directory, "service-map.yaml");
    await writeFile(engineMap, fieldMap("engine"));
    await writeFile(serviceMap, fieldMap("field-service"));
    const results: RewrapRow[] = [];
    let store = 0;
    for (const backend of ["sqlite", "postgres"]) {
      const newUrl = async () =>
        backend === "sqlite"
          ? `sqlite://${join(directory, `store-${++store}.db`)}`
          : postgres.tcpUrl(await postgres.createDatabase());

      const config = join(directory, `config-${backend}.yaml`);
      const oldKey = randomBytes(32).toString("base64");
      await writeFile(config, secretboxConfig([oldKey]));
      const engine = () =>
        openFieldLayer({ fieldMapPath: engineMap, encryptionConfigPath: config });
      results.push(
        await measure(
          backend,
          "engine (secretbox)",
          await newUrl(),
          batchSize,
          async (repository) => {
            const before = await engine();
            await populate(repository, before, records).finally(() => before.close());
            await writeFile(config, secretboxConfig([randomBytes(32).toString("base64"), oldKey]));
            return engine();
          },
        ),
      );

      results.push(
        await measure(
          backend,
          "field service (daemon)",
          await newUrl(),
          batchSize,
          async (repository) => {
            const codec = await openFieldLayer({
              fieldMapPath: serviceMap,
              daemonSocket: socketPath,
            });
            await populate(repository, codec, records);
            await markStale(repository);
            return codec;
          },
        ),
      );
    }
    return { records, batchSize, results };
  } finally {
    await postgres.stop();
    await rm(directory, { recursive: true, force: true });
  }
}

// The benchmark daemon has a single master key: re-stamp every field as written by an older
// key id so rewrap selects and moves all of them, as after a real rotation.
async function markStale(repository: RecordRepository): Promise<void> {
  let cursor = "";
  for (;;) {
    const ids = await repository.recordIds(RESOURCE, cursor, 1000);
    if (ids.length === 0) return;
    cursor = ids[ids.length - 1] as string;
    const rows = await repository.getMany(RESOURCE, ids);
    await repository.replace(
      RESOURCE,
      rows.map((row) => ({
        id: row.id,
        expectedVersion: row.version,
        document: row.document,
        stamps: row.stamps.map((stamp) => ({ ...stamp, keyId: "local:older-key-id" })),
      })),
    );
  }
}

/** The Markdown section of the results file. */
export function rewrapSection(report: RewrapReport | undefined): string[] {
  const lines = ["## Rewrap (store)", ""];
  if (report === undefined) return [...lines, "Not measured (see latest.json).", ""];
  lines.push(
    `${report.records.toLocaleString("en-US")} credential records (secret map as one encrypted value) per run, ` +
      `${report.batchSize} records per transaction, after a key rotation. "engine" rotates a secretbox key ` +
      'in the EncryptionConfiguration (in-process crypto); "field service" opens and seals through the ' +
      "daemon. PostgreSQL: temporary loopback cluster, default durability; SQLite: WAL, synchronous=FULL.",
    "",
    "| backend | route | records/s | records | seconds | left |",
    "|---|---|---:|---:|---:|---:|",
  );
  for (const row of report.results) {
    lines.push(
      `| ${row.backend} | ${row.route} | ${row.recordsPerS.toLocaleString("en-US")} | ${row.records.toLocaleString("en-US")} | ${row.elapsedS} | ${row.remaining} |`,
    );
  }
  lines.push("");
  return lines;
}
