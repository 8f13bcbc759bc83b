import { readFile } from "node:fs/promises";
import { type CST, LineCounter, Parser, parse, YAMLError } from "yaml";
import { ConfigError, errorMessage } from "../errors.js";

/**
 * Deepest nesting of collections a configuration file may have; real ones need fewer than ten
 * levels. yaml composes documents recursively: around 800 levels exhaust the stack, and on
 * Node 20 the next parse after that can abort the whole process (a fatal RegExpCompiler
 * out-of-memory), so a file is measured before it is composed.
 */
export const MAX_YAML_DEPTH = 64;

/** How deeply `text` nests collections, measured on yaml's CST, which is built without recursion. */
export function yamlNestingDepth(text: string): number {
  let deepest = 0;
  for (const token of new Parser().parse(text)) {
    const pending: [CST.Token | null | undefined, number][] = [[token, 0]];
    for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
      const [node, depth] = next;
      if (node === null || node === undefined) continue;
      deepest = Math.max(deepest, depth);
      if (node.type === "document") pending.push([node.value, depth]);
      else if ("items" in node) {
        for (const item of node.items) pending.push([item.key, depth + 1], [item.value, depth + 1]);
      }
    }
  }
  return deepest;
}

/** Reads a configuration file as UTF-8; `what` names it in the error ("keyring", "field map"). */
export async function readConfigText(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (error) {
    throw new ConfigError(
      `${what} ${path}`,
      `cannot be read: ${errorMessage(error)}`,
      "check the path and its permissions",
      { cause: error },
    );
  }
}

/**
 * Parses YAML (JSON is YAML too); the error names the document, the YAML problem and where it
 * is, in one line. yaml's own messages quote the offending lines, which may hold a secret and
 * span several lines, so only its first sentence and the position are kept.
 */
export function parseYamlText(text: string, what: string): unknown {
  if (yamlNestingDepth(text) > MAX_YAML_DEPTH) {
    throw new ConfigError(
      what,
      `nests collections more than ${MAX_YAML_DEPTH} levels deep`,
      "it is not a configuration file: check its contents",
    );
  }
  const lineCounter = new LineCounter();
  try {
    // Warnings (an unknown tag) would go to the process's warning stream, a second voice on
    // stderr; they are not errors in a configuration file, so they are left unsaid.
    return parse(text, { prettyErrors: false, lineCounter, logLevel: "error" });
  } catch (error) {
    const where =
      error instanceof YAMLError
        ? (({ line, col }) => ` at line ${line}, column ${col}`)(lineCounter.linePos(error.pos[0]))
        : "";
    const problem =
      error instanceof YAMLError && error.code === "MULTIPLE_DOCS"
        ? "holds more than one document (---)"
        : errorMessage(error).split("\n")[0];
    throw new ConfigError(what, `is not valid YAML${where}: ${problem}`, "fix its syntax", {
      cause: error,
    });
  }
}
