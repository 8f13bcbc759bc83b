import { Command } from "commander";
import { generateVersion, promoteVersion, retireVersion } from "../keys/keyring-edits.js";
import { primaryVersion, readKeyring, writeKeyring } from "../keys/keyring-file.js";
import { describeKeyring, requireKeyring, saveVersion, withProvider } from "./keyring-flags.js";
import {
  addProviderOptions,
  checkProviderFlags,
  type ProviderFlagsInput,
} from "./provider-flags.js";

interface RotateOptions extends ProviderFlagsInput {
  keyring: string;
  provider?: string;
  keyRef?: string;
  promote?: string;
}

/**
 * `kms-envelope rotate`: a new primary master-key version (the key id changes, the apiserver
 * re-seeds); earlier versions stay active for decryption. A running daemon picks it up.
 */
export function rotateCommand(): Command {
  const command = new Command("rotate")
    .description(
      "make a new primary master-key version in a keyring (old versions stay for decryption)",
    )
    .requiredOption("--keyring <file>", "keyring file")
    .option(
      "--provider <name|module>",
      "provider of the new version (default: the current primary's)",
    )
    .option("--key-ref <ref>", "provider key of the new version (default: the current primary's)")
    .option(
      "--promote <key-id>",
      "make this existing active version primary instead of generating one",
    );
  return addProviderOptions(command).action(async (options: RotateOptions) => {
    await checkProviderFlags(options);
    const keyring = await requireKeyring(options.keyring);
    if (options.promote !== undefined) {
      await writeKeyring(options.keyring, promoteVersion(keyring, options.promote));
    } else {
      const current = primaryVersion(keyring);
      const providerSpec = options.provider ?? current.provider;
      const keyRef = options.keyRef ?? current.keyRef;
      const version = await withProvider(options, providerSpec, keyRef, (provider) =>
        generateVersion(provider, keyRef, "primary"),
      );
      await saveVersion(options.keyring, keyring, version);
    }
    process.stdout.write(`${describeKeyring((await readKeyring(options.keyring)).keyring)}\n`);
  });
}

/** `kms-envelope retire`: stops loading a version; values under it no longer decrypt. */
export function retireCommand(): Command {
  return new Command("retire")
    .description("retire a non-primary version: the daemon stops loading it (run rewrap first)")
    .requiredOption("--keyring <file>", "keyring file")
    .requiredOption("--key-id <id>", "version to retire")
    .action(async (options: { keyring: string; keyId: string }) => {
      await writeKeyring(
        options.keyring,
        retireVersion(await requireKeyring(options.keyring), options.keyId),
      );
      process.stdout.write(`${describeKeyring((await readKeyring(options.keyring)).keyring)}\n`);
    });
}
