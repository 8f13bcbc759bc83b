import { Command, Option } from "commander";
import { ConfigError, InvalidRequestError } from "../errors.js";
import type { FieldRecord, JsonObject } from "../fields/field-codec.js";
import { getPath } from "../fields/field-paths.js";
import {
  addFieldLayerFlags,
  type FieldLayerFlags,
  fieldLayerFromFlags,
} from "./field-layer-flags.js";
import { addGuardOption, type GuardMode, guardFor } from "./guard-flag.js";
import { numberedLines, parseDocument } from "./json-lines.js";

interface FieldCommandFlags extends FieldLayerFlags {
  resource: string;
  id?: string;
  idField?: string;
  workspace?: string;
  workspaceField?: string;
  ndjson?: boolean;
  guard?: GuardMode;
}

// NDJSON lines go to the daemon in batches: one round trip per batch, bounded memory.
const BATCH = 100;

function textAt(document: JsonObject, field: string, where: string, flag: string): string {
  const value = getPath(document, field);
  if (typeof value === "string" && value !== "") return value;
  if (typeof value === "number") return String(value);
  throw new InvalidRequestError(`${where} has no ${field} for ${flag}`);
}

function toRecord(document: JsonObject, flags: FieldCommandFlags, where: string): FieldRecord {
  // checkFlags made sure one of them is given.
  const id = (
    flags.idField === undefined ? flags.id : textAt(document, flags.idField, where, "--id-field")
  ) as string;
  const workspace =
    flags.workspaceField === undefined
      ? flags.workspace
      : textAt(document, flags.workspaceField, where, "--workspace-field");
  return { id, document, workspace };
}

/**
 * What the flags must say before any input is read, as invocation errors: where each
 * record's id comes from, and its workspace when the resource is sealed under workspace keys.
 */
function checkFlags(flags: FieldCommandFlags, workspaceRequired: boolean): void {
  if (flags.ndjson && flags.idField === undefined)
    throw new ConfigError(
      "--id-field",
      "is required with --ndjson: each line is its own record",
      "name the property that holds each record's id",
    );
  if (flags.idField === undefined && (flags.id ?? "") === "")
    throw new ConfigError(
      "--id",
      "is required: the id is authenticated with every field",
      "give the record id with --id (or --id-field with --ndjson)",
    );
  if (flags.workspace === "")
    throw new ConfigError("--workspace", "is empty", "give the workspace the record belongs to");
  if (workspaceRequired && flags.workspace === undefined && flags.workspaceField === undefined)
    throw new ConfigError(
      "--workspace",
      `${flags.resource} is sealed under workspace keys and no workspace was given`,
      "give --workspace WORKSPACE (or --workspace-field PATH with --ndjson)",
    );
}

async function run(direction: "encrypt" | "decrypt", flags: FieldCommandFlags): Promise<void> {
  const layer = await fieldLayerFromFlags(flags);
  const guard =
    direction === "encrypt" ? guardFor(layer.fieldMap, flags.guard ?? "warn") : undefined;
  let stale = 0;
  let total = 0;
  const flush = async (batch: FieldRecord[]) => {
    if (batch.length === 0) return;
    for (const record of batch)
      guard?.check(
        flags.resource,
        record.id,
        record.document,
        layer.encryptedPaths(flags.resource),
      );
    const out =
      direction === "encrypt"
        ? await layer.seal(flags.resource, batch)
        : await layer.open(flags.resource, batch);
    for (const record of out) {
      if ("stale" in record && record.stale) stale++;
      process.stdout.write(`${JSON.stringify(record.document)}\n`);
    }
    total += batch.length;
  };
  try {
    // Before stdin is read, so a mistyped --resource or a missing flag fails at once and
    // prints nothing.
    layer.checkResource(flags.resource);
    checkFlags(flags, layer.fieldMap.resources.get(flags.resource)?.route === "field-service");
    if (flags.ndjson) await runLines(flags, flush);
    else {
      const chunks: Buffer[] = [];
      for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
      await flush([
        toRecord(
          parseDocument(Buffer.concat(chunks).toString("utf8"), "the input"),
          flags,
          "the input",
        ),
      ]);
    }
  } finally {
    await layer.close();
  }
  if (stale > 0)
    process.stderr.write(
      `kms-envelope: ${stale} of ${total} records were written by an older provider or key: run kms-envelope rewrap\n`,
    );
}

async function runLines(
  flags: FieldCommandFlags,
  flush: (batch: FieldRecord[]) => Promise<void>,
): Promise<void> {
  let batch: FieldRecord[] = [];
  for await (const line of numberedLines(process.stdin)) {
    const where = `line ${line.number}`;
    batch.push(toRecord(parseDocument(line.text, where), flags, where));
    if (batch.length === BATCH) {
      await flush(batch);
      batch = [];
    }
  }
  await flush(batch);
}

function fieldCommand(direction: "encrypt" | "decrypt"): Command {
  const command = new Command(direction)
    .description(
      direction === "encrypt"
        ? "encrypt the sensitive fields of JSON records read on stdin (field map decides which)"
        : "decrypt the sensitive fields of JSON records read on stdin; reports stale records",
    )
    .requiredOption(
      "--resource <resource>",
      "resource the records belong to, as the field map names it",
    )
    .option("--id <id>", "record id (authenticated with every field)")
    .option("--ndjson", "read one JSON record per line and write one per line")
    .option("--id-field <field>", "NDJSON: take each record's id from this field")
    .addOption(
      new Option("--workspace <workspace>", "workspace of field-service resources").conflicts(
        "workspaceField",
      ),
    )
    .option("--workspace-field <field>", "NDJSON: take each record's workspace from this field");
  if (direction === "encrypt") addGuardOption(command);
  return addFieldLayerFlags(command).action((flags: FieldCommandFlags) => run(direction, flags));
}

/** `kms-envelope encrypt`: the field map's fields of stdin records, encrypted, on stdout. */
export function encryptCommand(): Command {
  return fieldCommand("encrypt");
}

/** `kms-envelope decrypt`: the reverse; stale records are counted on stderr. */
export function decryptCommand(): Command {
  return fieldCommand("decrypt");
}
