import { ConfigError } from "../../errors.js";

/**
 * One thing wrong with an EncryptionConfiguration. `path` names the field the way
 * kube-apiserver does (`resources[0].providers[1].aesgcm.keys[0].secret`); it is "" for
 * problems with the file as a whole. Messages never contain key material.
 */
export interface ConfigProblem {
  /** Field path in kube-apiserver's notation; `""` when the problem concerns the whole file. */
  readonly path: string;
  /** What is wrong and, where it helps, how to fix it; never contains a key secret. */
  readonly message: string;
}

/**
 * Every problem found in one EncryptionConfiguration, reported together as the apiserver does
 * (code `INVALID_CONFIG`). Its setting is the file; the message lists every problem and
 * `problems` gives them one by one.
 */
export class InvalidEncryptionConfigurationError extends ConfigError {
  /** The problems found, in the order they were found; frozen. */
  readonly problems: readonly ConfigProblem[];

  /**
   * @param source - How the message names the configuration (a quoted file path, `(inline)`).
   * @param problems - At least one problem; copied and frozen.
   * @param options - `cause`: the underlying error, e.g. the file system's.
   */
  constructor(source: string, problems: readonly ConfigProblem[], options?: { cause?: unknown }) {
    const listed = problems
      .map(({ path, message }) => (path === "" ? message : `${path}: ${message}`))
      .join("; ");
    super(`EncryptionConfiguration ${source}`, listed, "fix the file and load it again", options);
    this.name = "InvalidEncryptionConfigurationError";
    this.problems = Object.freeze(problems.map((problem) => Object.freeze({ ...problem })));
  }
}
