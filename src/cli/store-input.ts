/**
 * How `store put` turns one NDJSON line into a record: which properties give its id, subject
 * and workspace. Errors name the line and the flag, and say what was found by kind only (a
 * number, an object), never the value.
 */
import { ConfigError, InvalidRequestError } from "../errors.js";
import type { JsonObject, JsonValue } from "../fields/field-codec.js";
import { getPath } from "../fields/field-paths.js";
import type { RecordInput } from "../store/encrypted-store.js";
import { type NumberedLine, parseDocument } from "./json-lines.js";

/** Where each record's id, subject and workspace come from (the put command's flags). */
export interface RecordPlacement {
  readonly idField: string;
  /** Absent: records get no subject. */
  readonly subjectField?: string;
  /** Absent: every record gets `workspace`. */
  readonly workspaceField?: string;
  readonly workspace?: string;
  /** The resource is sealed under workspace keys (field-service route), so each record needs one. */
  readonly workspaceRequired: boolean;
}

function kindOf(value: JsonValue): string {
  if (value === null) return "null";
  if (value === "") return "an empty string";
  if (Array.isArray(value)) return "an array";
  return typeof value === "object" ? "an object" : `a ${typeof value}`;
}

/** The non-empty string at `path`; null when it is absent or null. */
function textAt(document: JsonObject, path: string, flag: string, where: string): string | null {
  const value = getPath(document, path);
  if (typeof value === "string" && value !== "") return value;
  if (value === undefined || value === null) return null;
  throw new InvalidRequestError(
    `${where}: ${flag} ${path} must be a non-empty string, not ${kindOf(value)}`,
  );
}

function missing(where: string, flag: string, path: string, why: string): never {
  throw new InvalidRequestError(`${where} has no ${path} (${flag}): ${why}`);
}

/**
 * The record a line describes. The subject and workspace are left out (undefined) when no
 * flag names them, so a replacement can tell "not given" from "none".
 */
export function recordFromLine(line: NumberedLine, placement: RecordPlacement): RecordInput {
  const where = `line ${line.number}`;
  const document = parseDocument(line.text, where);
  const id =
    textAt(document, placement.idField, "--id-field", where) ??
    missing(where, "--id-field", placement.idField, "every record needs a string id");
  const subjectId =
    placement.subjectField === undefined
      ? undefined
      : textAt(document, placement.subjectField, "--subject-field", where);
  let workspace: string | null | undefined = placement.workspace;
  if (placement.workspaceField !== undefined) {
    const path = placement.workspaceField;
    workspace =
      textAt(document, path, "--workspace-field", where) ??
      (placement.workspaceRequired
        ? missing(where, "--workspace-field", path, "its fields are sealed under workspace keys")
        : null);
  }
  return {
    id,
    document,
    ...(subjectId === undefined ? {} : { subjectId }),
    ...(workspace === undefined ? {} : { workspace }),
  };
}

/**
 * Refuses placements that would store a secret in the clear or cannot seal: the id, subject and
 * workspace are plain columns, so none may come from a field the map encrypts; a resource
 * under workspace keys needs --workspace or --workspace-field.
 */
export function checkPlacement(
  placement: RecordPlacement,
  resource: string,
  encryptedPaths: readonly string[],
): void {
  const flags = [
    ["--id-field", placement.idField],
    ["--subject-field", placement.subjectField],
    ["--workspace-field", placement.workspaceField],
  ] as const;
  for (const [flag, path] of flags) {
    const encrypted = encryptedPaths.find(
      (entry) => path === entry || path?.startsWith(`${entry}.`),
    );
    if (encrypted !== undefined)
      throw new ConfigError(
        `${flag} ${path}`,
        `the field map encrypts ${encrypted} of ${resource}, but ${flag} values are stored in the clear`,
        "name a plain field",
      );
  }
  if (placement.workspace === "")
    throw new ConfigError("--workspace", "is empty", "give the workspace the records belong to");
  if (
    placement.workspaceRequired &&
    placement.workspaceField === undefined &&
    placement.workspace === undefined
  )
    throw new ConfigError(
      "--workspace",
      `${resource} is sealed under workspace keys and no workspace was given`,
      "give --workspace WORKSPACE or --workspace-field PATH",
    );
}
