import { Command, CommanderError } from "commander";
import { ConfigError, errorMessage, KmsEnvelopeError } from "../errors.js";
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

/**
 * The contract is one line per error. Our own messages are one line already; a library's (a
 * database driver's, a cloud SDK's) may not be, and a second line would break every script
 * that reads the first.
 */
function writeError(message: string): void {
  process.stderr.write(`kms-envelope: ${message.trim().replace(/\s*\n\s*/g, " ")}\n`);
}

/** `kms-envelope store put`, as the operator types it. */
function commandPath(command: Command): string {
  const names: string[] = [];
  for (let each: Command | null = command; each !== null; each = each.parent)
    names.unshift(each.name());
  return names.join(" ");
}

/** The command and every command under it, depth first. */
function commandTree(command: Command): Command[] {
  return [command, ...command.commands.flatMap(commandTree)];
}

/**
 * Every command ends through the catch of runProgram instead of process.exit, and writes its
 * errors as one line that ends with where to read the usage.
 */
function holdToContract(command: Command): void {
  const help = `(see ${commandPath(command)} --help)`;
  command.exitOverride().configureOutput({
    outputError: (message) => writeError(`${message.replace(/^error: /, "")} ${help}`),
    // Commander's own error text goes through outputError; the one thing it writes here is
    // the whole help of a command that needs a subcommand and was given none or an unknown one.
    writeErr: () =>
      writeError(
        `name a command of ${commandPath(command)}: ${command.commands
          .map((each) => each.name())
          .join(", ")} ${help}`,
      ),
  });
}

/**
 * The whole command line, built but not run: every command, with the error and exit-code
 * contract applied to each. `stopSignals` are caught already when the command is `serve`.
 */
export function buildProgram(stopSignals: StopSignals | undefined): Command {
  const program = new Command("kms-envelope")
    .description(
      "Kubernetes KMS plugin and field-encryption service with pluggable master-key custody",
    )
    .version(PACKAGE_VERSION);
  for (const command of [
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
  ])
    program.addCommand(command);
  // Commands built elsewhere do not inherit settings from the program, so each gets them.
  for (const command of commandTree(program)) holdToContract(command);
  return program;
}

/**
 * A flag's error names the flag; when the value was not on the command line but in an
 * environment variable or serve's config file, that is where to fix it, so it is named too.
 */
function whereSet(error: KmsEnvelopeError, command: Command | undefined): string {
  if (!(error instanceof ConfigError) || command === undefined) return error.message;
  const option = command.options.find((each) => each.long === error.setting);
  if (option === undefined) return error.message;
  const source = command.getOptionValueSource(option.attributeName());
  const origin =
    source === "env"
      ? `from ${option.envVar}`
      : source === "config"
        ? `from config file ${command.getOptionValue("config")}`
        : undefined;
  return origin === undefined
    ? error.message
    : error.message.replace(error.setting, `${error.setting} (${origin})`);
}

/** Runs the command line; `stopSignals` are caught already when the command is `serve`. */
export async function runProgram(stopSignals: StopSignals | undefined): Promise<void> {
  let running: Command | undefined;
  try {
    await buildProgram(stopSignals)
      .hook("preAction", (_program, command) => {
        running = command;
      })
      .parseAsync(process.argv);
  } catch (error) {
    if (error instanceof CommanderError) {
      // Commander already printed its message (or the help/version text).
      process.exitCode = error.exitCode === 0 ? 0 : 2;
    } else if (error instanceof KmsEnvelopeError) {
      writeError(whereSet(error, running));
      process.exitCode = CONFIGURATION_CODES.has(error.code) ? 2 : 1;
    } else {
      writeError(`unexpected failure: ${errorMessage(error)}`);
      process.exitCode = 1;
    }
  }
}
