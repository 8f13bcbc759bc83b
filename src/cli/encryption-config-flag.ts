import { type Command, Option } from "commander";
import { ConfigError } from "../errors.js";

/** What the flags below leave in a command's options. */
export interface EncryptionConfigFlags {
  encryptionConfig?: string;
  /** The old spelling, kept hidden for one release: `--config` also names serve's own file. */
  config?: string;
}

/** Adds --encryption-config (and its hidden old spelling --config) to a command. */
export function addEncryptionConfigFlag(command: Command, description: string): Command {
  return command
    .addOption(
      new Option("--encryption-config <file>", description).env("KMS_ENVELOPE_ENCRYPTION_CONFIG"),
    )
    .addOption(new Option("--config <file>").hideHelp());
}

/** The EncryptionConfiguration path given, if any; both spellings at once is refused. */
export function encryptionConfigPath(flags: EncryptionConfigFlags): string | undefined {
  if (flags.encryptionConfig !== undefined && flags.config !== undefined)
    throw new ConfigError(
      "--config",
      "is the old name of --encryption-config, and both are given",
      "give only --encryption-config",
    );
  return flags.encryptionConfig ?? flags.config;
}
