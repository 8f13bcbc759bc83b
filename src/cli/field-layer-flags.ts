import { type Command, Option } from "commander";
import { durationSchema } from "../config/duration.js";
import { parseFlag } from "../config/issues.js";
import type { FieldLayer } from "../fields/field-layer.js";
import { openFieldLayer } from "../fields/open-field-layer.js";
import { SOCKET_FILE_NAME } from "../wire/socket-address.js";
import {
  addEncryptionConfigFlag,
  type EncryptionConfigFlags,
  encryptionConfigPath,
} from "./encryption-config-flag.js";
import { socketFromFlags } from "./serve-config.js";

export interface FieldLayerFlags extends EncryptionConfigFlags {
  fields: string;
  allowKmsV1?: boolean;
  allowUnmapped?: boolean;
  socket?: string;
  runDir?: string;
  timeout: string;
}

/** The flags every command that encrypts or decrypts application fields shares. */
export function addFieldLayerFlags(command: Command): Command {
  command.addOption(
    new Option("--fields <file>", "field map: which fields of which resources are encrypted")
      .env("KMS_ENVELOPE_FIELD_MAP")
      .makeOptionMandatory(),
  );
  return addEncryptionConfigFlag(
    command,
    "EncryptionConfiguration for resources the field map routes through the engine",
  )
    .option("--allow-kms-v1", "accept deprecated kms apiVersion v1 providers (KMSv1 gate)")
    .option(
      // No environment variable: Commander turns any value of one (even "0") into true, and an
      // exception to failing closed belongs on the command line where it is seen.
      "--allow-unmapped",
      "pass records of resources the field map does not list through unchanged (in the clear) instead of refusing them",
    )
    .addOption(
      new Option(
        "--socket <path>",
        `kms-envelope daemon socket for field-service resources (default <run-dir>/${SOCKET_FILE_NAME})`,
      ).env("KMS_ENVELOPE_SOCKET"),
    )
    .addOption(
      new Option("--run-dir <dir>", "run directory of the daemon").env("KMS_ENVELOPE_RUN_DIR"),
    )
    .option("--timeout <duration>", "per-call timeout toward the daemon", "5s");
}

export function fieldLayerFromFlags(flags: FieldLayerFlags): Promise<FieldLayer> {
  const timeoutMs = parseFlag(durationSchema, "timeout", flags.timeout);
  return openFieldLayer({
    fieldMapPath: flags.fields,
    encryptionConfigPath: encryptionConfigPath(flags),
    allowKmsV1: flags.allowKmsV1,
    allowUnmapped: flags.allowUnmapped,
    daemonSocket: socketFromFlags(flags),
    daemonTimeoutMs: timeoutMs,
  });
}
