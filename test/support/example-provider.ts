/**
 * A keyring under examples/custom-provider (a key-encryption key file and its keygen), as the
 * package test and the README test both need one from the CLI they run.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { type CliCommand, type CliResult, runCli } from "./daemon-process.js";

/** Writes a fresh 32-byte KEK (0600) at `kek` and runs keygen; returns its key ref and output. */
export async function keygenWithExampleProvider(options: {
  readonly cli: CliCommand;
  readonly provider: string;
  readonly keyring: string;
  readonly kek: string;
}): Promise<{ keyRef: string; keygen: CliResult }> {
  await writeFile(options.kek, randomBytes(32), { mode: 0o600 });
  const keyRef = `file:${options.kek}`;
  const keygen = await runCli(
    ["keygen", "--provider", options.provider, "--key-ref", keyRef, "--keyring", options.keyring],
    {},
    20_000,
    undefined,
    options.cli,
  );
  assert.equal(keygen.code, 0, keygen.stderr);
  return { keyRef, keygen };
}
