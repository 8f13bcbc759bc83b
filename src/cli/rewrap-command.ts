import { Command, InvalidArgumentError } from "commander";
import { durationSchema } from "../config/duration.js";
import { type RewrapSummary, rewrap } from "../store/rewrap.js";
import { progressFor } from "../store/rewrap-progress.js";
import {
  addFieldLayerFlags,
  type FieldLayerFlags,
  fieldLayerFromFlags,
} from "./field-layer-flags.js";
import { addStoreOptions, openStoreFromFlags, type StoreFlags } from "./store-flags.js";

interface RewrapFlags extends FieldLayerFlags, StoreFlags {
  batchSize: number;
  dryRun?: boolean;
  resource?: string[];
  all?: boolean;
  json?: boolean;
  exitCode?: boolean;
  adoptPlaintext?: boolean;
  shared?: boolean;
  workers: number;
  lease: number;
  workerId?: string;
}

function workers(text: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1 || value > 64) {
    throw new InvalidArgumentError("must be a whole number from 1 to 64");
  }
  return value;
}

function leaseMs(text: string): number {
  const parsed = durationSchema.safeParse(text);
  if (!parsed.success || parsed.data < 1_000)
    throw new InvalidArgumentError("must be a duration of at least 1s, such as 30s or 2m");
  return parsed.data;
}

function batchSize(text: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1 || value > 5_000) {
    throw new InvalidArgumentError("must be a whole number from 1 to 5000");
  }
  return value;
}

const writer = (field: { provider: string; keyId: string }) =>
  `${field.provider}${field.keyId === "" ? "" : ` ${field.keyId}`}`;

/** The human-readable summary: what was found, what moved, what is left and what to do. */
/** Plaintext fields left over every resource: the summary line and the exit code both use it. */
function plaintextLeft(summary: RewrapSummary): number {
  return summary.resources.reduce((sum, entry) => sum + entry.plaintextLeft, 0);
}

function describeSummary(summary: RewrapSummary): string {
  const lines: string[] = [];
  const verb = summary.dryRun ? "would rewrap" : "rewrapped";
  for (const resource of summary.resources) {
    lines.push(
      `${resource.resource}: ${resource.recordsNeeding} records not under the current writer` +
        (summary.dryRun
          ? ""
          : `; ${verb} ${resource.recordsRewrapped} records (${resource.fieldsRewrapped} fields)` +
            `, ${resource.conflictsRetried} changed meanwhile and were re-read` +
            `, ${resource.failed.length} could not be opened, ${resource.remaining} left`),
    );
    for (const current of resource.current) {
      const stale = resource.staleFields.filter((entry) => entry.path === current.path);
      lines.push(
        `  ${current.path} → ${writer(current)}` +
          (stale.length === 0
            ? ""
            : ` (${stale.map((entry) => `${entry.fields} under ${writer(entry)}`).join(", ")})`),
      );
    }
    for (const lookup of resource.lookups) {
      const behind = [
        ...resource.staleTokens
          .filter((entry) => entry.path === lookup.path)
          // An empty key id is a token of another shape (see TOKEN_KEY_ID_SQL).
          .map(
            (entry) =>
              `${entry.tokens} under ${entry.keyId === "" ? "no version (malformed)" : entry.keyId}`,
          ),
        ...resource.missingTokens
          .filter((entry) => entry.path === lookup.path)
          .map((entry) => `${entry.records} missing`),
      ];
      lines.push(
        `  ${lookup.path} lookup tokens → ${lookup.keyId}` +
          (behind.length === 0 ? "" : ` (${behind.join(", ")})`),
      );
    }
    if (resource.plaintextFields.length > 0 || resource.plaintextEncrypted > 0)
      lines.push(
        `  plaintext: ${resource.plaintextFields.map((entry) => `${entry.path} ${entry.fields}`).join(", ") || "none"} at the start` +
          (summary.dryRun ? "" : `, ${resource.plaintextEncrypted} encrypted`) +
          `, ${resource.plaintextLeft} plaintext fields left`,
      );
    if (resource.shared !== undefined) {
      const { run } = resource.shared;
      lines.push(
        `  shared run ${resource.shared.runId} (generation ${resource.shared.generation}), all workers: ${run.batchesDone}/${run.batches} batches done, ${run.recordsRewrapped} records rewrapped, ${run.failed} could not be opened` +
          `; worker ${resource.shared.workerId} leased ${resource.shared.batchesLeased} batches (${resource.shared.leasesTakenOver} taken over from expired leases, ${resource.shared.leasesLost} lost)`,
      );
    }
    for (const failure of resource.failed.slice(0, 20)) {
      lines.push(
        `  cannot open ${resource.resource} ${JSON.stringify(failure.id)}: ${failure.code}`,
      );
    }
  }
  for (const entry of summary.unmapped) {
    lines.push(
      `${entry.resource}.${entry.path}: ${entry.fields} fields under ${writer(entry)} that the field map no longer lists (left alone)`,
    );
  }
  const plaintext = plaintextLeft(summary);
  // The one line an operator waits for before switching the plaintext fallback off.
  lines.push(`${plaintext} plaintext fields left`);
  if (
    summary.backend === "postgres" &&
    summary.resources.some((entry) => entry.plaintextFields.length > 0)
  )
    lines.push(
      "PostgreSQL keeps replaced row versions, plaintext included, until VACUUM reclaims them: after adopting, run VACUUM FULL kmse_records (it locks the table while it runs)",
    );
  if (summary.scrub !== undefined)
    lines.push(
      summary.scrub.complete
        ? "scrubbed: no replaced value is left in the store's files"
        : `not scrubbed: ${summary.scrub.advice ?? "the backend cannot remove replaced values"}`,
    );
  const records = summary.resources.reduce((sum, entry) => sum + entry.recordsRewrapped, 0);
  const seconds = summary.elapsedMs / 1000;
  lines.push(
    `${summary.dryRun ? "dry run" : summary.interrupted ? "interrupted" : "done"} (${summary.backend}) in ${seconds.toFixed(1)} s` +
      (summary.dryRun || seconds === 0 ? "" : `, ${Math.round(records / seconds)} records/s`),
  );
  return `${lines.join("\n")}\n`;
}

/**
 * `kms-envelope rewrap`: re-encrypts every stored field not under the current writer (SPEC.md
 * §6). Safe beside the running application, resumable after any kill, idempotent.
 */
export function rewrapCommand(): Command {
  const command = new Command("rewrap")
    .description(
      "re-encrypt stored fields that are not under the current primary key (safe while the application runs; resumable)",
    )
    .option("--batch-size <n>", "records per transaction", batchSize, 200)
    .option("--dry-run", "count what would be rewrapped; change nothing")
    .option(
      "--resource <name...>",
      "only these resources (default: every resource in the store that the field map lists)",
    )
    .option(
      "--all",
      "also open records whose stamps look current and rewrap those the engine reports stale",
    )
    .option("--json", "print the summary as JSON")
    .option(
      "--adopt-plaintext",
      "also encrypt values stored in the clear before the field map listed their fields, then scrub the old values from the store's files where the backend can",
    )
    .option(
      "--exit-code",
      "with --dry-run: exit 1 when anything is left to rewrap (so a script can wait for 0)",
    )
    .option(
      "--shared",
      "work beside other rewrap workers on the same PostgreSQL store (on this or other machines): lease batches, take over those of workers that died",
    )
    .option("--workers <n>", "with --shared: lease loops in this process", workers, 1)
    .option(
      "--lease <duration>",
      "with --shared: how long a leased batch stays this worker's without a write (longer than a batch takes)",
      leaseMs,
      30_000,
    )
    .option(
      "--worker-id <id>",
      "with --shared: this worker's name in the store's leases, unique per worker (default: hostname-pid)",
    );
  return addStoreOptions(addFieldLayerFlags(command)).action(async (flags: RewrapFlags) => {
    const codec = await fieldLayerFromFlags(flags);
    const controller = new AbortController();
    // A first Ctrl-C or SIGTERM finishes the batch in flight and prints the summary; rerunning
    // continues from there. The default handlers come back so a second signal still kills.
    const stop = () => {
      process.stderr.write("rewrap: stopping after the current batch (signal again to abort)\n");
      controller.abort();
      removeHandlers();
    };
    const removeHandlers = () => {
      process.removeListener("SIGINT", stop);
      process.removeListener("SIGTERM", stop);
    };
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
    try {
      const repository = await openStoreFromFlags(flags, {
        readOnly: flags.dryRun === true,
        existing: true,
      });
      try {
        const summary = await rewrap({
          repository,
          codec,
          batchSize: flags.batchSize,
          dryRun: flags.dryRun === true,
          resources: flags.resource,
          openAll: flags.all === true,
          adoptPlaintext: flags.adoptPlaintext === true,
          progress: progressFor(process.stderr),
          signal: controller.signal,
          ...(flags.shared === true
            ? {
                shared: {
                  workers: flags.workers,
                  leaseMs: flags.lease,
                  ...(flags.workerId === undefined ? {} : { workerId: flags.workerId }),
                },
              }
            : {}),
        });
        process.stdout.write(
          flags.json ? `${JSON.stringify(summary, null, 2)}\n` : describeSummary(summary),
        );
        const left = summary.resources.reduce((sum, entry) => sum + entry.remaining, 0);
        const plaintext = plaintextLeft(summary);
        // A dry run asked for an exit code answers "is anything left" with it, like git diff.
        if (summary.dryRun && flags.exitCode === true && left + plaintext > 0) process.exitCode = 1;
        if (!summary.dryRun && (summary.interrupted || left > 0 || plaintext > 0)) {
          process.stderr.write(
            summary.interrupted
              ? "kms-envelope: rewrap was interrupted; run it again to continue\n"
              : left > 0
                ? `kms-envelope: ${left} records are still not under the current writer; fix or delete the ones that cannot be opened, then run rewrap again (do not retire the old key yet)\n`
                : `kms-envelope: ${plaintext} fields are still stored in the clear; run rewrap --adopt-plaintext to encrypt them\n`,
          );
          process.exitCode = 1;
        }
      } finally {
        await repository.close();
      }
    } finally {
      removeHandlers();
      await codec.close();
    }
  });
}
