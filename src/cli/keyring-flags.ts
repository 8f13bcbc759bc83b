import { existsSync } from "node:fs";
import type { CustodyProvider } from "../../providers/types.js";
import { providerNameSchema } from "../config/schemas.js";
import { ConfigError } from "../errors.js";
import { addVersion } from "../keys/keyring-edits.js";
import {
  type Keyring,
  type KeyringVersion,
  readKeyring,
  writeKeyring,
} from "../keys/keyring-file.js";
import { type ProviderFlagsInput, providerRegistry } from "./provider-flags.js";

/**
 * Opens the provider named by `--provider` (a built-in name, a module path or a package) for
 * `keyRef`, runs `work` with it, and closes it whatever happens.
 */
export async function withProvider<T>(
  flags: ProviderFlagsInput,
  providerSpec: string,
  keyRef: string,
  work: (provider: CustodyProvider) => Promise<T>,
): Promise<T> {
  // A key command's notes share stderr with its errors, one prefixed line each.
  const registry = await providerRegistry(flags, process.env, undefined, undefined, {
    info: (message) => process.stderr.write(`kms-envelope: ${message}\n`),
  });
  try {
    const name = providerNameSchema.safeParse(providerSpec).success
      ? providerSpec
      : await registry.register(providerSpec);
    return await work(await registry.provider(name, keyRef));
  } finally {
    await registry.close();
  }
}

/** Reads the keyring, or undefined when the file does not exist yet. */
export async function readKeyringIfPresent(path: string): Promise<Keyring | undefined> {
  return existsSync(path) ? (await readKeyring(path)).keyring : undefined;
}

/** Reads an existing keyring, with an error that says how to create one. */
export async function requireKeyring(path: string): Promise<Keyring> {
  const keyring = await readKeyringIfPresent(path);
  if (keyring === undefined) {
    throw new ConfigError(
      "--keyring",
      `there is no keyring at ${path}`,
      `create it with \`kms-envelope keygen --provider P --key-ref REF --keyring ${path}\``,
    );
  }
  return keyring;
}

/** Appends a version to the keyring at `path` (creating the file) and writes it atomically. */
export async function saveVersion(
  path: string,
  existing: Keyring | undefined,
  version: KeyringVersion,
): Promise<void> {
  const keyring: Keyring = existing ?? {
    apiVersion: "kms-envelope.io/v1",
    kind: "Keyring",
    versions: [],
  };
  await writeKeyring(
    path,
    existing === undefined ? { ...keyring, versions: [version] } : addVersion(keyring, version),
  );
}

/** One line per version, for operators. */
export function describeKeyring(keyring: Keyring): string {
  return keyring.versions
    .map(
      (version) =>
        `${version.state.padEnd(7)} ${version.keyId}  ${version.provider} ${version.keyRef}  ${version.created}`,
    )
    .join("\n");
}
