import { Command } from "commander";
import { loadEncryptionConfiguration } from "../engine/config/encryption-configuration.js";
import { providersFor } from "../engine/config/resource-lookup.js";
import type { EncryptionConfiguration, ProviderConfig } from "../engine/config/types.js";
import { EncryptionEngine } from "../engine/encryption-engine.js";
import { etcdKeyReadings } from "../engine/etcd-key.js";
import type { Read } from "../engine/transformers/transformer.js";
import { ConfigError } from "../errors.js";
import {
  addEncryptionConfigFlag,
  type EncryptionConfigFlags,
  encryptionConfigPath,
} from "./encryption-config-flag.js";

interface DecodeFlags extends EncryptionConfigFlags {
  key: string;
  resource?: string;
  etcdPrefix?: string;
  allowKmsV1?: boolean;
  json?: boolean;
}

async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

const LAYOUT = "<prefix>/<resource>/[<namespace>/]<name>, or <prefix>/<group>/<resource>/…";

/**
 * The resources the value may belong to, most likely first, each with a distinct rule: one
 * when `--resource` or `--etcd-prefix` is given. Without them the prefix is not needed to
 * decrypt (the whole key is the authenticated data); only the rule it selects is, so readings
 * of the key that select the same rule are one candidate, and when every rule is `*.*` any
 * reading will do.
 */
function candidateResources(flags: DecodeFlags, config: EncryptionConfiguration): string[] {
  if (flags.resource !== undefined) return [flags.resource];
  const key = JSON.stringify(flags.key.slice(0, 200));
  let readings = etcdKeyReadings(flags.key);
  if (flags.etcdPrefix !== undefined) {
    const prefix = flags.etcdPrefix.replace(/\/+$/, "");
    if (!flags.key.startsWith(`${prefix}/`))
      throw new ConfigError(
        "--etcd-prefix",
        `${key} is not under ${prefix}/`,
        "give kube-apiserver's --etcd-prefix, or leave the flag out to have it found",
      );
    readings = readings.filter((reading) => reading.prefix === prefix);
  }
  if (readings.length === 0)
    throw new ConfigError(
      "--key",
      `${key} is not an etcd key kube-apiserver writes (${LAYOUT})`,
      "give the key the value was read from, or the resource with --resource",
    );
  const seen = new Set<readonly ProviderConfig[]>();
  return readings
    .filter((reading) => {
      const providers = providersFor(config, reading.resource);
      if (seen.has(providers)) return false;
      seen.add(providers);
      return true;
    })
    .map((reading) => reading.resource);
}

/**
 * Decrypts with the rule of each candidate in turn, so a key under an unknown prefix that can
 * be read two ways is read by the rule that wrote the value; the most likely one's failure is
 * reported when none can.
 */
async function decode(
  engine: EncryptionEngine,
  resources: readonly string[],
  value: Uint8Array,
  key: string,
): Promise<{ resource: string; read: Read }> {
  let failure: unknown;
  for (const resource of resources) {
    try {
      return { resource, read: await engine.decrypt(resource, value, Buffer.from(key, "utf8")) };
    } catch (error) {
      failure ??= error;
    }
  }
  throw failure;
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
    .option(
      "--etcd-prefix <prefix>",
      "kube-apiserver's --etcd-prefix (default: found from the key and the configuration)",
    )
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
      const resources = candidateResources(flags, config);
      const value = await readStdin();
      const engine = await EncryptionEngine.start(config);
      try {
        const { resource, read } = await decode(engine, resources, value, flags.key);
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
