import type { z } from "zod";
import { ConfigError } from "../errors.js";

/** One problem a schema found, with where it is and, when its rule says one, what to do. */
interface Found {
  readonly place: string;
  readonly message: string;
  readonly remedy?: string;
}

/** An issue at `place`, with the advice its rule attached (`params: { remedy }`), if any. */
function found(issue: z.core.$ZodIssue, place: string): Found {
  const remedy = issue.code === "custom" ? issue.params?.remedy : undefined;
  return { place, message: issue.message, remedy: typeof remedy === "string" ? remedy : undefined };
}

function flagName(key: PropertyKey | undefined): string {
  return `--${String(key).replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`)}`;
}

/**
 * One ConfigError for every problem a schema found, so one run reports them all: its setting is
 * where the first problem is, and any others follow in the problem text, each with its place.
 * The remedy is the first problem's own, or else the caller's.
 */
function combine(found: readonly Found[], remedy: string): ConfigError {
  // A failed parse has at least one issue.
  const [first, ...others] = found as [Found, ...Found[]];
  const problem = [first.message, ...others.map(({ place, message }) => `${place}: ${message}`)];
  return new ConfigError(first.place, problem.join("; "), first.remedy ?? remedy);
}

// Schema messages say what a flag must be; --help lists every flag with its default.
const FLAG_REMEDY = "run with --help for what each flag accepts";

/** Command-line options refused by their schema, as a ConfigError naming the flag (`--socket-mode`). */
export function flagIssuesError(issues: readonly z.core.$ZodIssue[]): ConfigError {
  return combine(
    issues.map((issue) => found(issue, flagName(issue.path[0]))),
    FLAG_REMEDY,
  );
}

/**
 * A document refused by its schema, as a ConfigError naming the document and the path inside
 * it (`keyring k.yaml versions.2.keyId`, the document alone for the whole of it).
 */
export function documentIssuesError(
  issues: readonly z.core.$ZodIssue[],
  document: string,
  remedy: string,
): ConfigError {
  return combine(
    issues.map((issue, index) => {
      const path = issue.path.join(".");
      // The first place is the error's setting, so it names the document; the others follow it.
      const place =
        index > 0 ? path || "(document)" : path === "" ? document : `${document} ${path}`;
      return found(issue, place);
    }),
    remedy,
  );
}

/** One flag's value parsed by its schema, or a ConfigError naming the flag (`--timeout`). */
export function parseFlag<Schema extends z.ZodType>(
  schema: Schema,
  flag: string,
  value: unknown,
): z.output<Schema> {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  throw combine(
    parsed.error.issues.map((issue) => found(issue, `--${flag}`)),
    FLAG_REMEDY,
  );
}
