import assert from "node:assert/strict";
import {
  type ConfigProblem,
  InvalidEncryptionConfigurationError,
} from "../../../../src/engine/config/config-error.js";
import {
  type ParseEncryptionConfigurationOptions,
  parseEncryptionConfiguration,
} from "../../../../src/engine/config/encryption-configuration.js";
import type { EncryptionConfiguration } from "../../../../src/engine/config/types.js";
import { KmsEnvelopeError } from "../../../../src/errors.js";

/** base64 of 16, 24 and 32 bytes: valid AES-128/192/256 and (32 only) secretbox keys. */
export const KEY16 = Buffer.alloc(16, 1).toString("base64");
export const KEY24 = Buffer.alloc(24, 2).toString("base64");
export const KEY32 = Buffer.alloc(32, 3).toString("base64");

export const KMS_V2 = { kms: { apiVersion: "v2", name: "p", endpoint: "unix:///run/kms.sock" } };

/** A complete configuration document (as JSON, which is YAML) with the given `resources`. */
export function document(resources: unknown): string {
  return JSON.stringify({
    apiVersion: "apiserver.config.k8s.io/v1",
    kind: "EncryptionConfiguration",
    resources,
  });
}

/** One entry encrypting `secrets` with the given providers. */
export function withProviders(...providers: unknown[]): string {
  return document([{ resources: ["secrets"], providers }]);
}

/** One entry with the given resources and a kms v2 provider. */
export function withResources(...resources: string[]): string {
  return document([{ resources, providers: [KMS_V2] }]);
}

export function parse(
  text: string,
  options?: ParseEncryptionConfigurationOptions,
): EncryptionConfiguration {
  return parseEncryptionConfiguration(text, options);
}

/** The problems a configuration is refused with; fails the test if it is accepted. */
export function problemsOf(
  text: string | Uint8Array,
  options?: ParseEncryptionConfigurationOptions,
): readonly ConfigProblem[] {
  try {
    parseEncryptionConfiguration(text, options);
  } catch (error) {
    assert.ok(error instanceof InvalidEncryptionConfigurationError, `unexpected error ${error}`);
    assert.ok(error instanceof KmsEnvelopeError, "is a KmsEnvelopeError");
    assert.equal(error.code, "INVALID_CONFIG");
    return error.problems;
  }
  assert.fail("the configuration was accepted");
}

/** Asserts the configuration is refused with exactly one problem at `path` matching `meaning`. */
export function assertOnlyProblem(
  text: string,
  path: string,
  meaning: RegExp,
  options?: ParseEncryptionConfigurationOptions,
): void {
  const problems = problemsOf(text, options);
  assert.equal(problems.length, 1, `expected one problem, got ${JSON.stringify(problems)}`);
  assert.equal(problems[0]?.path, path);
  assert.match(problems[0]?.message ?? "", meaning);
}
