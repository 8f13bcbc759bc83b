import { once } from "node:events";
import { createWriteStream } from "node:fs";
import { Command, Option } from "commander";
import { ConfigError } from "../errors.js";
import { type ExportFormat, writeSubjectExport } from "../store/subject-export.js";
import { drainingWriter } from "./draining-writer.js";
import { addStoreOptions, openStoreFromFlags, type StoreFlags } from "./store-flags.js";

interface ExportOptions extends StoreFlags {
  subject: string;
  format: ExportFormat;
  output?: string;
}

/**
 * `kms-envelope export --subject ID`: every record of a data subject with encrypted fields
 * left as the stored ciphertext (SPEC.md §5). It needs no key and no daemon.
 */
export function exportCommand(): Command {
  const command = new Command("export")
    .description(
      "write every record of a data subject, encrypted fields as ciphertext (never decrypted)",
    )
    .requiredOption("--subject <id>", "data subject (owner) whose records to export")
    .addOption(
      new Option("--format <format>", "ndjson (one record per line) or json")
        .choices(["ndjson", "json"])
        .default("ndjson"),
    )
    .option("--output <file>", "write to this file (created 0600) instead of stdout");
  return addStoreOptions(command).action(async (options: ExportOptions) => {
    if (options.subject.trim() === "") {
      throw new ConfigError("--subject", "is empty", "give the id of the data subject to export");
    }
    const repository = await openStoreFromFlags(options, { readOnly: true });
    try {
      if (options.output === undefined) {
        await writeSubjectExport(
          repository,
          options.subject,
          options.format,
          drainingWriter(process.stdout),
        );
        return;
      }
      // The export holds plaintext fields of one person: readable by the operator only.
      const file = createWriteStream(options.output, { mode: 0o600, flags: "wx" });
      await once(file, "open").catch((error: NodeJS.ErrnoException) => {
        throw error.code === "EEXIST"
          ? new ConfigError("--output", `${options.output} exists`, "choose another name", {
              cause: error,
            })
          : new ConfigError(
              "--output",
              `${options.output} cannot be created: ${error.message}`,
              "check the path and its permissions",
              { cause: error },
            );
      });
      const count = await writeSubjectExport(
        repository,
        options.subject,
        options.format,
        drainingWriter(file),
      );
      file.end();
      await once(file, "finish");
      process.stderr.write(
        `exported ${count} records of subject ${options.subject} to ${options.output}\n`,
      );
    } finally {
      await repository.close();
    }
  });
}
