import { Command, CommanderError } from "commander";
import { errorMessage, KmsEnvelopeError } from "../errors.js";
import { PACKAGE_VERSION } from "../package-info.js";
import { conformanceCommand } from "./conformance-command.js";
import { etcdCommand } from "./etcd-command.js";
import { exportCommand } from "./export-command.js";
import { decryptCommand, encryptCommand } from "./field-commands.js";
import { keygenCommand } from "./keygen-command.js";
import { rewrapCommand } from "./rewrap-command.js";
import { retireCommand, rotateCommand } from "./rotate-command.js";
import { serveCommand } from "./serve-command.js";
import { statusCommand } from "./status-command.js";
import type { StopSignals } from "./stop-signals.js";
import { storeCommand } from "./store-command.js";

// Exit codes: 1 = runtime failure, 2 = the invocation or configuration is wrong.
const CONFIGURATION_CODES = new Set([
  "INVALID_CONFIG",
  "UNMAPPED_RESOURCE",
  "MISSING_MASTER_KEY",
  "INVALID_MASTER_KEY",
  "SOCKET_IN_USE",
  "SOCKET_PATH_NOT_SOCKET",
  "STORE_MISSING",
]);

/** Runs the command line; `stopSignals` are caught already when the command is `serve`. */
export async function runProgram(stopSignals: StopSignals | undefined): Promise<void> {
  const program = new Command("kms-envelope")
    .description(
      "Kubernetes KMS plugin and field-encryption service with pluggable master-key custody",
    )
    .version(PACKAGE_VERSION);
  // Commands built elsewhere do not inherit these settings from the program, so apply them to each.
  for (const command of [
    program,
    serveCommand(stopSignals),
    statusCommand(),
    keygenCommand(),
    rotateCommand(),
    retireCommand(),
    encryptCommand(),
    decryptCommand(),
    etcdCommand(),
    rewrapCommand(),
    exportCommand(),
    storeCommand(),
    conformanceCommand(),
  ]) {
    for (const each of [command, ...command.commands])
      each.showHelpAfterError("(run with --help for usage)").exitOverride();
    if (command !== program) program.addCommand(command);
  }

  try {
    await program.parseAsync(process.argv);
  } catch (error) {
    if (error instanceof CommanderError) {
      // Commander already printed its message (or the help/version text).
      process.exitCode = error.exitCode === 0 ? 0 : 2;
    } else if (error instanceof KmsEnvelopeError) {
      process.stderr.write(`kms-envelope: ${error.message}\n`);
      process.exitCode = CONFIGURATION_CODES.has(error.code) ? 2 : 1;
    } else {
      process.stderr.write(`kms-envelope: unexpected failure: ${errorMessage(error)}\n`);
      process.exitCode = 1;
    }
  }
}
