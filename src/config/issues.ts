import type { z } from "zod";
import { KmsEnvelopeError } from "../errors.js";

/** How an issue says where it is: a command-line flag (`--socket-mode`) or a document path. */
export type IssueNaming = "flag" | "path";

function flagName(key: PropertyKey | undefined): string {
  return `--${String(key).replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`)}`;
}

/**
 * Every problem a schema found, on one line: each names where it is — the flag
 * (`--socket-mode must be …`), or the path inside the document (`versions.2.keyId: must be …`,
 * `(document)` for the whole) — then what is expected.
 * One wording for every configuration edge, so the rule "name the field, say what to do" holds.
 */
export function describeIssues(issues: readonly z.core.$ZodIssue[], naming: IssueNaming): string {
  return issues
    .map((issue) => {
      if (naming === "flag") return `${flagName(issue.path[0])} ${issue.message}`;
      return `${issue.path.join(".") || "(document)"}: ${issue.message}`;
    })
    .join("; ");
}

/** One flag's value parsed by its schema, or INVALID_CONFIG naming the flag (`--timeout …`). */
export function parseFlag<Schema extends z.ZodType>(
  schema: Schema,
  flag: string,
  value: unknown,
): z.output<Schema> {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map((issue) => `--${flag} ${issue.message}`);
  throw new KmsEnvelopeError("INVALID_CONFIG", problems.join("; "));
}
