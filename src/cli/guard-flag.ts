import { type Command, Option } from "commander";
import type { FieldMap } from "../fields/field-map.js";
import { PlaintextGuard } from "../store/plaintext-guard.js";

/** What --guard leaves in a command's options. */
export type GuardMode = "off" | "warn" | "refuse";

/** Adds --guard (warn by default) to a command that writes records. */
export function addGuardOption(command: Command): Command {
  return command.addOption(
    new Option(
      "--guard <mode>",
      "plaintext fields that look like credentials: warn on stderr, refuse the input, or off",
    )
      .choices(["off", "warn", "refuse"])
      .default("warn"),
  );
}

/**
 * The plaintext-field guard over what stays in the clear: a resource's `plaintextChecked`
 * fields when the field map names them, otherwise every unencrypted field. Warnings name the
 * record and field, never the value.
 */
export function guardFor(map: FieldMap, mode: GuardMode): PlaintextGuard {
  const checkedPaths = Object.fromEntries(
    [...map.resources.values()]
      .filter((spec) => spec.plaintextChecked.length > 0)
      .map((spec) => [spec.resource, [...spec.plaintextChecked]]),
  );
  return new PlaintextGuard({ mode, checkedPaths }, (finding) =>
    process.stderr.write(
      `kms-envelope: warning: ${finding.resource} ${JSON.stringify(finding.recordId)}: plaintext field ${finding.path} looks like a credential (${finding.detectors.join(", ")}); encrypt it or remove it\n`,
    ),
  );
}
