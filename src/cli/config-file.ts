import type { Command } from "commander";
import { parseYamlText, readConfigText } from "../config/yaml-file.js";
import { ConfigError } from "../errors.js";

/**
 * Fills the command's options from a YAML file of `flag-name: value` pairs (SPEC.md §6: flags
 * over environment over config file). A value is taken only where neither a flag nor an
 * environment variable set the option; unknown names are refused so a typo is not ignored.
 */
export async function applyConfigFile(command: Command, path: string): Promise<void> {
  const document = parseYamlText(await readConfigText(path, "config file"), `config file ${path}`);
  if (document === null || document === undefined) return;
  if (typeof document !== "object" || Array.isArray(document)) {
    throw new ConfigError(
      `config file ${path}`,
      "is not a mapping of flag names to values",
      "write one `flag-name: value` per line, e.g. `socket: /var/run/kmsplugin/kms.sock`",
    );
  }
  const known = new Map(command.options.map((option) => [option.long?.replace(/^--/, ""), option]));
  for (const [name, value] of Object.entries(document)) {
    const option = known.get(name);
    if (option === undefined || name === "config") {
      throw new ConfigError(
        `config file ${path}`,
        `unknown setting "${name}"`,
        `settings are the flag names of \`${command.name()}\`, e.g. socket, http-address`,
      );
    }
    const key = option.attributeName();
    const source = command.getOptionValueSource(key);
    if (source === "cli" || source === "env") continue;
    // Recorded as the file's, so an error about the value can say where it was written.
    command.setOptionValueWithSource(
      key,
      option.variadic
        ? (Array.isArray(value) ? value : [value]).map(String)
        : option.isBoolean()
          ? value === true
          : String(value),
      "config",
    );
  }
}
