import { ConfigError } from "../../errors.js";

/**
 * One thing wrong with an EncryptionConfiguration. `path` names the field the way
 * kube-apiserver does (`resources[0].providers[1].aesgcm.keys[0].secret`); it is "" for
 * problems with the file as a whole. Messages never contain key material.
 */
export interface ConfigProblem {
  readonly path: string;
  readonly message: string;
}

/**
 * Every problem found in one EncryptionConfiguration, reported together as the apiserver does.
 * Its setting is the file; `problems` carries each field path.
 */
export class InvalidEncryptionConfigurationError extends ConfigError {
  readonly problems: readonly ConfigProblem[];

  constructor(source: string, problems: readonly ConfigProblem[], options?: { cause?: unknown }) {
    const listed = problems
      .map(({ path, message }) => (path === "" ? message : `${path}: ${message}`))
      .join("; ");
    super(`EncryptionConfiguration ${source}`, listed, "fix the file and load it again", options);
    this.name = "InvalidEncryptionConfigurationError";
    this.problems = Object.freeze(problems.map((problem) => Object.freeze({ ...problem })));
  }
}
