import { once } from "node:events";
import { createWriteStream } from "node:fs";
import { Command, Option } from "commander";
import { KmsEnvelopeError } from "../errors.js";
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
      throw new KmsEnvelopeError("INVALID_CONFIG", "--subject must not be empty");
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
        throw new KmsEnvelopeError(
          "INVALID_CONFIG",
          `cannot create --output ${options.output}: ${error.code === "EEXIST" ? "the file exists; choose another name" : error.message}`,
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
