import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { LineCounter, parseAllDocuments } from "yaml";
import { MAX_YAML_DEPTH, yamlNestingDepth } from "../../config/yaml-file.js";
import { errorMessage } from "../../errors.js";
import { buildModel } from "./build-model.js";
import { type ConfigProblem, InvalidEncryptionConfigurationError } from "./config-error.js";
import { decodeEncryptionConfiguration } from "./decode.js";
import type { EncryptionConfiguration } from "./types.js";
import { validateEncryptionConfiguration } from "./validate.js";

/** How an EncryptionConfiguration is checked, as kube-apiserver's flags decide it. */
export interface EncryptionConfigurationOptions {
  /**
   * Accept kms `apiVersion: v1` providers, as kube-apiserver does with
   * `--feature-gates=KMSv1=true`; refused by default.
   */
  readonly allowKmsV1?: boolean;
  /**
   * The file will be reloaded automatically (`--encryption-provider-config-automatic-reload`):
   * kms v1 provider names must then be unique, as v2 names always are. Default false.
   */
  readonly reload?: boolean;
}

/** Options of {@link parseEncryptionConfiguration}. */
export interface ParseEncryptionConfigurationOptions extends EncryptionConfigurationOptions {
  /** How messages name the configuration, e.g. its file path; default `(inline)`. */
  readonly source?: string;
}

/**
 * Loads a Kubernetes EncryptionConfiguration file (kube-apiserver's
 * `--encryption-provider-config`) with the apiserver's semantics: strict decoding, defaults,
 * validation, the KMSv1 gate and wildcard masking. The result's `hash` is the sha256 of the
 * file's bytes.
 *
 * @param path - The file (YAML or JSON); only its first YAML document is read.
 * @param options - Feature gates; see {@link EncryptionConfigurationOptions}.
 * @returns The validated, frozen configuration.
 * @throws {@link InvalidEncryptionConfigurationError} (`INVALID_CONFIG`) when the file cannot be
 * read or anything in it would be refused by the apiserver, listing every problem with its field
 * path. Messages never quote the file's contents, which may hold key secrets.
 */
export async function loadEncryptionConfiguration(
  path: string,
  options: EncryptionConfigurationOptions = {},
): Promise<EncryptionConfiguration> {
  const source = JSON.stringify(path);
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? String(error);
    throw new InvalidEncryptionConfigurationError(
      source,
      [
        {
          path: "",
          message: `cannot read the file (${reason}): check the path and its permissions`,
        },
      ],
      { cause: error },
    );
  }
  return parseEncryptionConfiguration(bytes, { ...options, source });
}

/**
 * Parses and validates EncryptionConfiguration text, as {@link loadEncryptionConfiguration}
 * does for a file. Only the first YAML document is read (JSON is YAML), as by the apiserver.
 *
 * @param text - YAML or JSON; bytes must be UTF-8 and are hashed as given, text is hashed as
 * its UTF-8 encoding.
 * @param options - Feature gates, and the name messages use for the configuration.
 * @returns The validated, frozen configuration.
 * @throws {@link InvalidEncryptionConfigurationError} (`INVALID_CONFIG`) listing every problem;
 * messages carry line and column, never the text, which may hold key secrets.
 */
export function parseEncryptionConfiguration(
  text: string | Uint8Array,
  options: ParseEncryptionConfigurationOptions = {},
): EncryptionConfiguration {
  const source = options.source ?? "(inline)";
  const fail = (problems: readonly ConfigProblem[]): never => {
    throw new InvalidEncryptionConfigurationError(source, problems);
  };

  const bytes = typeof text === "string" ? new TextEncoder().encode(text) : text;
  if (bytes.length === 0) {
    fail([{ path: "", message: "the file is empty: write an EncryptionConfiguration" }]);
  }
  let content: string;
  try {
    content = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return fail([{ path: "", message: "the file is not valid UTF-8 text" }]);
  }

  const decoded = decodeEncryptionConfiguration(readFirstDocument(content, fail));
  if (!decoded.ok) return fail(decoded.problems);
  const problems = validateEncryptionConfiguration(decoded.config, {
    reload: options.reload ?? false,
  });
  if (problems.length > 0) fail(problems);
  const built = buildModel(decoded.config, { allowKmsV1: options.allowKmsV1 ?? false });
  if (!built.ok) return fail([built.problem]);

  return Object.freeze({
    rules: built.rules,
    hash: createHash("sha256").update(bytes).digest("hex"),
  });
}

/**
 * The first YAML document as plain data (JSON is YAML, so both are read here). Like the
 * apiserver's YAML decoder, any later `---` documents are not read. Parse messages carry the
 * line and column but never the source text, which may hold key secrets.
 */
function readFirstDocument(content: string, fail: (problems: ConfigProblem[]) => never): unknown {
  if (yamlNestingDepth(content) > MAX_YAML_DEPTH) {
    return fail([
      {
        path: "",
        message: `collections nest more than ${MAX_YAML_DEPTH} levels deep, where an EncryptionConfiguration needs fewer than ten: check the file's contents`,
      },
    ]);
  }
  const lineCounter = new LineCounter();
  const documents = parseAllDocuments(content, {
    lineCounter,
    prettyErrors: false,
    uniqueKeys: true,
    logLevel: "error",
  });
  const first = Array.isArray(documents) ? documents[0] : undefined;
  if (first === undefined) {
    return fail([
      { path: "", message: "the file holds no document: write an EncryptionConfiguration" },
    ]);
  }
  const [error] = first.errors;
  if (error !== undefined) {
    const { line, col } = lineCounter.linePos(error.pos[0]);
    return fail([
      {
        path: "",
        message: `not valid YAML or JSON at line ${line}, column ${col}: ${error.message}`,
      },
    ]);
  }
  try {
    return first.toJS({ maxAliasCount: 100 });
  } catch (error) {
    return fail([{ path: "", message: `not valid YAML: ${errorMessage(error)}` }]);
  }
}
