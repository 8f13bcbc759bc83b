import { Command } from "commander";
import { loadEncryptionConfiguration } from "../engine/config/encryption-configuration.js";
import { EncryptionEngine } from "../engine/encryption-engine.js";
import { resourceOfEtcdKey } from "../engine/etcd-key.js";
import { ConfigError } from "../errors.js";
import {
  addEncryptionConfigFlag,
  type EncryptionConfigFlags,
  encryptionConfigPath,
} from "./encryption-config-flag.js";

interface DecodeFlags extends EncryptionConfigFlags {
  key: string;
  resource?: string;
  etcdPrefix: string;
  allowKmsV1?: boolean;
  json?: boolean;
}

async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/**
 * `kms-envelope etcd decode`: one raw etcd value (e.g. `etcdctl get --print-value-only`) to the
 * object kube-apiserver stored, with the same EncryptionConfiguration, for disaster recovery.
 * The etcd key is the authenticated data, so it must be the key the value was read from.
 */
function decodeCommand(): Command {
  const command = new Command("decode").description(
    "decrypt one raw etcd value read on stdin; the plaintext goes to stdout",
  );
  return addEncryptionConfigFlag(command, "the cluster's EncryptionConfiguration (required)")
    .requiredOption(
      "--key <etcd-key>",
      "the etcd key the value was stored under, e.g. /registry/secrets/ns/name",
    )
    .option("--resource <resource>", "group resource, when it cannot be read from the key")
    .option("--etcd-prefix <prefix>", "kube-apiserver's --etcd-prefix", "/registry")
    .option("--allow-kms-v1", "accept deprecated kms apiVersion v1 providers (KMSv1 gate)")
    .option(
      "--json",
      "print {resource, provider, keyId, stale, plaintext (base64)} instead of raw bytes",
    )
    .action(async (flags: DecodeFlags) => {
      const path = encryptionConfigPath(flags);
      if (path === undefined)
        throw new ConfigError(
          "--encryption-config",
          "is required",
          "give the cluster's EncryptionConfiguration file",
        );
      const config = await loadEncryptionConfiguration(path, {
        allowKmsV1: flags.allowKmsV1,
      });
      const resource = flags.resource ?? resourceOfEtcdKey(flags.key, flags.etcdPrefix);
      const value = await readStdin();
      const engine = await EncryptionEngine.start(config);
      try {
        const read = await engine.decrypt(resource, value, Buffer.from(flags.key, "utf8"));
        if (flags.json) {
          process.stdout.write(
            `${JSON.stringify({
              resource,
              provider: read.writer.provider,
              keyId: read.writer.keyId,
              stale: read.stale,
              plaintext: Buffer.from(read.plaintext).toString("base64"),
            })}\n`,
          );
        } else {
          process.stdout.write(read.plaintext);
          const key = read.writer.keyId === "" ? "" : ` key ${JSON.stringify(read.writer.keyId)}`;
          process.stderr.write(
            `kms-envelope: ${resource} decrypted by ${read.writer.provider}${key}${read.stale ? " (stale: not the current write provider or key)" : ""}\n`,
          );
        }
      } finally {
        engine.close();
      }
    });
}

/** `kms-envelope etcd …`: tools for values read straight from etcd. */
export function etcdCommand(): Command {
  return new Command("etcd")
    .description("work with raw kube-apiserver values from etcd")
    .addCommand(decodeCommand());
}
