import { Command } from "commander";
import { encodeMasterKey, generateMasterKey } from "../crypto/master-key.js";
import { wipe } from "../crypto/wipe.js";
import { ConfigError } from "../errors.js";
import { generateVersion } from "../keys/keyring-edits.js";
import { readKeyring } from "../keys/keyring-file.js";
import {
  describeKeyring,
  readKeyringIfPresent,
  saveVersion,
  withProvider,
} from "./keyring-flags.js";
import {
  addProviderOptions,
  checkProviderFlags,
  type ProviderFlagsInput,
} from "./provider-flags.js";

interface KeygenOptions extends ProviderFlagsInput {
  provider?: string;
  keyRef?: string;
  keyring?: string;
}

/**
 * `kms-envelope keygen`: without --keyring, prints a fresh key for ENCRYPTION_MASTER_KEY; with
 * it, generates a master key, wraps it through the provider and writes it to the keyring (the
 * primary of a new keyring; an active, staged version of an existing one).
 */
export function keygenCommand(): Command {
  const command = new Command("keygen")
    .description(
      "print a new base64 master key for ENCRYPTION_MASTER_KEY, or wrap a new version into a keyring",
    )
    .option(
      "--provider <name|module>",
      "custody provider: aws, azure, gcp, vault, pkcs11, local, or a custom module",
    )
    .option(
      "--key-ref <ref>",
      "provider key: AWS key ARN or alias, Azure versioned key URL, Google CryptoKey name, Vault Transit key URL, pkcs11: URI (RFC 7512)",
    )
    .option("--keyring <file>", "keyring file to create or append to");
  return addProviderOptions(command).action(async (options: KeygenOptions) => {
    await checkProviderFlags(options);
    if (options.keyring === undefined) {
      // Without a keyring nothing is wrapped, so a provider would be silently ignored.
      const unused = options.provider !== undefined ? "--provider" : options.keyRef && "--key-ref";
      if (unused)
        throw new ConfigError(
          unused,
          "is used only with --keyring",
          "add --keyring FILE to wrap a new version, or drop the flag to print a local key",
        );
      const key = generateMasterKey();
      process.stdout.write(`${encodeMasterKey(key)}\n`);
      wipe(key);
      return;
    }
    if (options.provider === undefined || options.keyRef === undefined) {
      throw new ConfigError(
        "--keyring",
        "needs --provider and --key-ref",
        "give both, e.g. --provider aws --key-ref arn:aws:kms:…",
      );
    }
    const {
      keyring,
      keyRef,
      provider: providerSpec,
    } = options as Required<Pick<KeygenOptions, "keyring" | "keyRef" | "provider">>;
    const existing = await readKeyringIfPresent(keyring);
    const version = await withProvider(options, providerSpec, keyRef, (provider) =>
      generateVersion(provider, keyRef, existing === undefined ? "primary" : "active"),
    );
    await saveVersion(keyring, existing, version);
    process.stdout.write(`${describeKeyring((await readKeyring(keyring)).keyring)}\n`);
    if (existing !== undefined) {
      process.stderr.write(
        `added ${version.keyId} as active; make it primary with \`kms-envelope rotate --keyring ${keyring} --promote ${version.keyId}\`\n`,
      );
    }
  });
}
