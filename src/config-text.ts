import { readFile } from "node:fs/promises";
import { parse } from "yaml";
import { errorMessage, KmsEnvelopeError } from "./errors.js";

/** Reads a configuration file as UTF-8; `what` names it in the error ("keyring", "field map"). */
export async function readConfigText(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (error) {
    throw new KmsEnvelopeError(
      "INVALID_CONFIG",
      `cannot read ${what} ${path}: ${errorMessage(error)}`,
      { cause: error },
    );
  }
}

/** Parses YAML (JSON is YAML too); the error names the document and the YAML problem. */
export function parseYamlText(text: string, what: string): unknown {
  try {
    return parse(text);
  } catch (error) {
    throw new KmsEnvelopeError(
      "INVALID_CONFIG",
      `${what} is not valid YAML: ${errorMessage(error)}`,
      { cause: error },
    );
  }
}
