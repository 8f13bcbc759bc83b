// Field encryption beside what an application team would pick instead, for `npm run bench`:
// the field layer (engine route, secretbox key, in process) against @47ng/cloak (AES-256-GCM
// through WebCrypto, the core of prisma-field-encryption) and against the floor, libsodium's
// crypto_secretbox_easy on the same values with no layer around it. One process, one thread;
// the contenders take turns round by round so that other load on the shared machine falls on
// all of them alike, and the medians of the rounds are compared as ratios. Every value each
// contender decrypts is checked against its original.
import { randomBytes, randomFillSync } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decryptString, encryptString, generateKey } from "@47ng/cloak";
import sodium from "libsodium-wrappers";
import { secretboxBackendName } from "../src/crypto/secretbox.js";
import type { FieldRecord, JsonObject } from "../src/fields/field-codec.js";
import { openFieldLayer } from "../src/fields/open-field-layer.js";

const RESOURCE = "records.bench.example";
const RECORDS = 100;
const FIELDS = 10;
const VALUE_BYTES = 100;

/** One contender's encrypt and decrypt of one batch (RECORDS × FIELDS values). */
interface Contender {
  name: string;
  /** Encrypts the batch; what decrypt takes. */
  encrypt(): Promise<unknown>;
  /** Decrypts what encrypt returned; the number of values that differ from the originals. */
  decrypt(sealed: unknown): Promise<number>;
}

/** Medians of the rounds, in fields per second. */
export interface CompareRow {
  name: string;
  encryptFieldsPerS: number;
  decryptFieldsPerS: number;
  mismatches: number;
}

export interface FieldCompareReport {
  records: number;
  fields: number;
  valueBytes: number;
  rounds: number;
  roundMs: number;
  results: CompareRow[];
}

const names = Array.from({ length: FIELDS }, (_, index) => `f${index}`);

function batch(): FieldRecord[] {
  return Array.from({ length: RECORDS }, (_, index) => ({
    id: `r${index}`,
    document: Object.fromEntries(
      names.map((name) => [
        name,
        randomBytes(VALUE_BYTES).toString("base64").slice(0, VALUE_BYTES),
      ]),
    ) as JsonObject,
  }));
}

function values(records: readonly FieldRecord[]): string[] {
  return records.flatMap((record) => names.map((name) => record.document[name] as string));
}

/** Batches per second of `work` over `ms`. */
async function rate(ms: number, work: () => Promise<void>): Promise<number> {
  const started = performance.now();
  let done = 0;
  while (performance.now() - started < ms) {
    await work();
    done++;
  }
  return done / ((performance.now() - started) / 1000);
}

function median(samples: readonly number[]): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
}

async function fieldLayerContender(
  directory: string,
  records: FieldRecord[],
): Promise<Contender & { close(): Promise<void> }> {
  const mapPath = join(directory, "map.yaml");
  const configPath = join(directory, "config.yaml");
  await writeFile(
    mapPath,
    `apiVersion: kms-envelope/v1\nkind: FieldMap\nresources:\n  - resource: ${RESOURCE}\n    route: engine\n    fields:\n${names.map((name) => `      ${name}: string`).join("\n")}\n`,
  );
  await writeFile(
    configPath,
    `apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: ["*.bench.example"]\n    providers: [{ secretbox: { keys: [{ name: k1, secret: "${randomBytes(32).toString("base64")}" }] } }]\n`,
  );
  const layer = await openFieldLayer({ fieldMapPath: mapPath, encryptionConfigPath: configPath });
  const originals = values(records);
  return {
    name: `kms-envelope field layer (engine, secretbox, ${secretboxBackendName()})`,
    encrypt: () => layer.seal(RESOURCE, records),
    async decrypt(sealed) {
      const opened = await layer.open(RESOURCE, sealed as FieldRecord[]);
      return values(opened).filter((value, index) => value !== originals[index]).length;
    },
    close: () => layer.close(),
  };
}

async function cloakContender(records: FieldRecord[]): Promise<Contender> {
  const key = generateKey();
  const originals = values(records);
  return {
    name: "@47ng/cloak (AES-256-GCM, WebCrypto)",
    encrypt: () => Promise.all(originals.map((value) => encryptString(value, key))),
    async decrypt(sealed) {
      const opened = await Promise.all(
        (sealed as string[]).map((text) => decryptString(text, key)),
      );
      return opened.filter((value, index) => value !== originals[index]).length;
    },
  };
}

async function floorContender(records: FieldRecord[]): Promise<Contender> {
  await sodium.ready;
  const key = sodium.randombytes_buf(sodium.crypto_secretbox_KEYBYTES);
  const originals = values(records);
  const bytes = originals.map((value) => Buffer.from(value, "utf8"));
  return {
    name: "libsodium crypto_secretbox_easy (no layer)",
    async encrypt() {
      // The batch's nonces from one call to the system's generator: libsodium's randombytes_buf
      // per value would make the floor slower than the layer that sits on it.
      const size = sodium.crypto_secretbox_NONCEBYTES;
      const nonces = randomFillSync(new Uint8Array(bytes.length * size));
      return bytes.map((plaintext, index) => {
        const nonce = nonces.subarray(index * size, (index + 1) * size);
        return [nonce, sodium.crypto_secretbox_easy(plaintext, nonce, key)] as const;
      });
    },
    async decrypt(sealed) {
      const opened = (sealed as (readonly [Uint8Array, Uint8Array])[]).map(([nonce, box]) =>
        Buffer.from(sodium.crypto_secretbox_open_easy(box, nonce, key)).toString("utf8"),
      );
      return opened.filter((value, index) => value !== originals[index]).length;
    },
  };
}

/** Runs `rounds` rounds of `roundMs` per contender and operation, contenders alternating. */
export async function compareFieldEncryption(
  rounds: number,
  roundMs: number,
): Promise<FieldCompareReport> {
  const directory = await mkdtemp(join(tmpdir(), "kmse-bench-compare-"));
  const records = batch();
  const layer = await fieldLayerContender(directory, records);
  try {
    const contenders = [layer, await cloakContender(records), await floorContender(records)];
    const samples = contenders.map(() => ({ encrypt: [] as number[], decrypt: [] as number[] }));
    const mismatches = contenders.map(() => 0);
    const sealed = await Promise.all(contenders.map((contender) => contender.encrypt()));
    // A short unmeasured turn each, so no contender pays for the JIT warming up.
    for (const contender of contenders)
      await rate(Math.min(500, roundMs), async () => {
        await contender.encrypt();
      });
    for (let round = 0; round < rounds; round++) {
      for (const [index, contender] of contenders.entries()) {
        const perRound = samples[index] as { encrypt: number[]; decrypt: number[] };
        perRound.encrypt.push(
          await rate(roundMs, async () => {
            await contender.encrypt();
          }),
        );
        perRound.decrypt.push(
          await rate(roundMs, async () => {
            mismatches[index] = (mismatches[index] ?? 0) + (await contender.decrypt(sealed[index]));
          }),
        );
      }
    }
    const fieldsPerBatch = RECORDS * FIELDS;
    return {
      records: RECORDS,
      fields: FIELDS,
      valueBytes: VALUE_BYTES,
      rounds,
      roundMs,
      results: contenders.map((contender, index) => ({
        name: contender.name,
        encryptFieldsPerS: Math.round(median(samples[index]?.encrypt ?? []) * fieldsPerBatch),
        decryptFieldsPerS: Math.round(median(samples[index]?.decrypt ?? []) * fieldsPerBatch),
        mismatches: mismatches[index] ?? 0,
      })),
    };
  } finally {
    await layer.close();
    await rm(directory, { recursive: true, force: true });
  }
}

/** The Markdown section of the results file. */
export function fieldCompareSection(
  report: FieldCompareReport | undefined,
  error?: string,
): string[] {
  const lines = ["## Field encryption beside @47ng/cloak", ""];
  if (report === undefined) return [...lines, `Not measured: ${error ?? "see latest.json"}.`, ""];
  const [layer, cloak] = report.results;
  lines.push(
    `${report.records} records × ${report.fields} string fields of ${report.valueBytes} bytes per batch, one thread, ` +
      `contenders alternating for ${report.rounds} rounds of ${report.roundMs} ms per operation; medians. ` +
      "Ratios are against @47ng/cloak (what prisma-field-encryption uses); the last row is the cipher alone.",
    "",
    "| contender | encrypt fields/s | decrypt fields/s | encrypt × cloak | decrypt × cloak | mismatches |",
    "|---|---:|---:|---:|---:|---:|",
  );
  for (const row of report.results) {
    const ratio = (value: number, base: number | undefined) =>
      base === undefined || base === 0 ? "—" : (value / base).toFixed(2);
    lines.push(
      `| ${row.name} | ${row.encryptFieldsPerS.toLocaleString("en-US")} | ${row.decryptFieldsPerS.toLocaleString("en-US")} | ${ratio(row.encryptFieldsPerS, cloak?.encryptFieldsPerS)} | ${ratio(row.decryptFieldsPerS, cloak?.decryptFieldsPerS)} | ${row.mismatches} |`,
    );
  }
  if (layer !== undefined && cloak !== undefined)
    lines.push(
      "",
      `The field layer runs at ${(layer.encryptFieldsPerS / cloak.encryptFieldsPerS).toFixed(2)}× cloak's speed encrypting and ${(layer.decryptFieldsPerS / cloak.decryptFieldsPerS).toFixed(2)}× decrypting (issue 15 asks for ≥ 3×).`,
    );
  lines.push("");
  return lines;
}
