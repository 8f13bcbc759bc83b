// Field-layer load client, run as its own process: encrypts then decrypts records of N fields ×
// M bytes through the field layer for a bounded time per phase, in three routes: the engine
// with a secretbox key, the engine with kms v2 at the daemon's socket (one seed, so no plugin
// call per field), and the daemon's field service. Verifies what it opens; prints one JSON line.
//
//   node --import tsx bench/engine-fields.ts --socket /tmp/x/kms.sock [--duration 10s]
//     [--batch 100] [--fields 10] [--value-bytes 100] [--concurrency 4]
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import type { FieldRecord, JsonObject } from "../src/fields/field-codec.js";
import type { FieldLayer } from "../src/fields/field-layer.js";
import { openFieldLayer } from "../src/fields/open-field-layer.js";
import { parseDurationMs } from "./lib.js";

export interface EnginePhaseResult {
  route: string;
  op: "encrypt" | "decrypt";
  records: number;
  fields: number;
  elapsedS: number;
  fieldsPerS: number;
  mismatches: number;
}

export interface EngineFieldsReport {
  fieldsPerRecord: number;
  valueBytes: number;
  batchRecords: number;
  concurrency: number;
  results: EnginePhaseResult[];
}

const { values } = parseArgs({
  options: {
    socket: { type: "string" },
    duration: { type: "string", default: "10s" },
    batch: { type: "string", default: "100" },
    fields: { type: "string", default: "10" },
    "value-bytes": { type: "string", default: "100" },
    concurrency: { type: "string", default: "4" },
  },
});
if (values.socket === undefined) throw new Error("--socket is required");
const socket = values.socket;
const durationMs = parseDurationMs(values.duration);
const batchSize = Number(values.batch);
const fieldCount = Number(values.fields);
const valueBytes = Number(values["value-bytes"]);
const concurrency = Number(values.concurrency);
const fieldNames = Array.from({ length: fieldCount }, (_, i) => `f${i}`);

function fieldMap(route: "engine" | "field-service"): string {
  const fields = fieldNames.map((name) => `      ${name}: string`).join("\n");
  return `apiVersion: kms-envelope/v1\nkind: FieldMap\nresources:\n  - resource: records.bench.example\n    route: ${route}\n    fields:\n${fields}\n`;
}

function encryptionConfig(provider: string): string {
  return `apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: ["*.bench.example"]\n    providers: [${provider}]\n`;
}

function makeBatch(start: number): FieldRecord[] {
  return Array.from({ length: batchSize }, (_, i) => ({
    id: `r${start + i}`,
    workspace: "ws-bench",
    document: Object.fromEntries(
      fieldNames.map((name) => [
        name,
        randomBytes(valueBytes).toString("base64").slice(0, valueBytes),
      ]),
    ) as JsonObject,
  }));
}

/** Runs `work` with `concurrency` loops in flight until the phase time is up. */
async function phase(
  work: (index: number) => Promise<void>,
): Promise<{ batches: number; elapsedS: number }> {
  const started = performance.now();
  let batches = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() - started < durationMs) await work(batches++);
    }),
  );
  return { batches, elapsedS: (performance.now() - started) / 1000 };
}

async function measure(route: string, layer: FieldLayer): Promise<EnginePhaseResult[]> {
  const resource = "records.bench.example";
  const plain = Array.from({ length: 8 }, (_, i) => makeBatch(i * batchSize));
  const sealed = await Promise.all(plain.map((batch) => layer.seal(resource, batch)));
  const encrypt = await phase(async (index) => {
    await layer.seal(resource, plain[index % plain.length] as FieldRecord[]);
  });
  let mismatches = 0;
  const decrypt = await phase(async (index) => {
    const which = index % sealed.length;
    const batch = sealed[which] ?? [];
    const opened = await layer.open(
      resource,
      batch.map((record) => ({ id: record.id, workspace: "ws-bench", document: record.document })),
    );
    const expected = plain[which] ?? [];
    if (JSON.stringify(opened[0]?.document) !== JSON.stringify(expected[0]?.document)) mismatches++;
  });
  const row = (op: "encrypt" | "decrypt", run: { batches: number; elapsedS: number }) => ({
    route,
    op,
    records: run.batches * batchSize,
    fields: run.batches * batchSize * fieldCount,
    elapsedS: Math.round(run.elapsedS * 100) / 100,
    fieldsPerS: Math.round((run.batches * batchSize * fieldCount) / run.elapsedS),
    mismatches: op === "decrypt" ? mismatches : 0,
  });
  return [row("encrypt", encrypt), row("decrypt", decrypt)];
}

const directory = await mkdtemp(join(tmpdir(), "kmse-bench-engine-"));
try {
  const secretboxKey = randomBytes(32).toString("base64");
  const routes: [string, string, string | undefined][] = [
    [
      "engine secretbox",
      fieldMap("engine"),
      encryptionConfig(`{ secretbox: { keys: [{ name: k1, secret: "${secretboxKey}" }] } }`),
    ],
    [
      "engine kms v2 (daemon)",
      fieldMap("engine"),
      encryptionConfig(`{ kms: { apiVersion: v2, name: bench, endpoint: "unix://${socket}" } }`),
    ],
    ["field service (daemon)", fieldMap("field-service"), undefined],
  ];
  const results: EnginePhaseResult[] = [];
  for (const [index, [route, map, config]] of routes.entries()) {
    const mapPath = join(directory, `map-${index}.yaml`);
    await writeFile(mapPath, map);
    const configPath = config === undefined ? undefined : join(directory, `config-${index}.yaml`);
    if (configPath !== undefined && config !== undefined) await writeFile(configPath, config);
    const layer = await openFieldLayer({
      fieldMapPath: mapPath,
      encryptionConfigPath: configPath,
      daemonSocket: socket,
    });
    try {
      const rows = await measure(route, layer);
      for (const row of rows)
        process.stderr.write(`${row.route} ${row.op}: ${row.fieldsPerS} fields/s\n`);
      results.push(...rows);
    } finally {
      await layer.close();
    }
  }
  const report: EngineFieldsReport = {
    fieldsPerRecord: fieldCount,
    valueBytes,
    batchRecords: batchSize,
    concurrency,
    results,
  };
  process.stdout.write(`${JSON.stringify(report)}\n`);
  process.exitCode = results.some((row) => row.mismatches > 0) ? 1 : 0;
} finally {
  await rm(directory, { recursive: true, force: true });
}
