import { randomBytes } from "node:crypto";
import { rename, writeFile } from "node:fs/promises";
import { stringify } from "yaml";
import { z } from "zod";
import { documentIssuesError } from "../config/issues.js";
import { base64Schema, keyIdSchema, providerNameSchema } from "../config/schemas.js";
import { parseYamlText, readConfigText } from "../config/yaml-file.js";

/** States of a master-key version (SPEC.md §3). */
const VERSION_STATES = ["primary", "active", "retired"] as const;

/** What a keyring version is for: encrypt (primary), decrypt only (active), nothing (retired). */
export type VersionState = (typeof VERSION_STATES)[number];

const versionSchema = z.strictObject({
  keyId: keyIdSchema,
  provider: providerNameSchema,
  keyRef: z.string().min(1),
  wrappedKey: base64Schema,
  created: z.iso.datetime({ offset: true }),
  state: z.enum(VERSION_STATES),
});

const keyringSchema = z
  .strictObject({
    apiVersion: z.literal("kms-envelope.io/v1"),
    kind: z.literal("Keyring"),
    versions: z.array(versionSchema).min(1, "must hold at least one version"),
  })
  .superRefine((keyring, context) => {
    const primaries = keyring.versions.filter((version) => version.state === "primary").length;
    if (primaries !== 1) {
      context.addIssue({
        code: "custom",
        path: ["versions"],
        message: `must have exactly one primary version, found ${primaries}`,
      });
    }
    const seen = new Set<string>();
    for (const [index, version] of keyring.versions.entries()) {
      if (seen.has(version.keyId)) {
        context.addIssue({
          code: "custom",
          path: ["versions", index, "keyId"],
          message: `duplicates ${version.keyId}: a key id is never reused`,
        });
      }
      seen.add(version.keyId);
    }
  });

/** One master-key version as the keyring file records it: wrapped, never in plaintext. */
export type KeyringVersion = z.infer<typeof versionSchema>;

/** The keyring file: every master-key version with its custody and state. */
export type Keyring = z.infer<typeof keyringSchema>;

/** Validates a parsed keyring document; the error names the file and the offending path. */
export function validateKeyring(document: unknown, source: string): Keyring {
  const parsed = keyringSchema.safeParse(document);
  if (!parsed.success) {
    throw documentIssuesError(parsed.error.issues, `keyring ${source}`, "fix the keyring file");
  }
  return parsed.data;
}

/** Reads and validates a keyring file, returning it with the raw text (for change detection). */
export async function readKeyring(path: string): Promise<{ keyring: Keyring; text: string }> {
  const text = await readConfigText(path, "keyring");
  const document = parseYamlText(text, `keyring ${path}`);
  return { keyring: validateKeyring(document, path), text };
}

/**
 * Writes a keyring atomically (temporary file, then rename), so a reader — the daemon polling
 * the file — sees the old or the new keyring, never half of one. The file holds no plaintext
 * key, so it may live in a ConfigMap; it is still written 0640.
 */
export async function writeKeyring(path: string, keyring: Keyring): Promise<void> {
  const validated = validateKeyring(keyring, path);
  const temporary = `${path}.${randomBytes(6).toString("hex")}.tmp`;
  const header =
    "# kms-envelope keyring: wrapped master-key versions (no plaintext key). Edit with kms-envelope keygen/rotate/retire.\n";
  await writeFile(temporary, header + stringify(validated), { mode: 0o640, flag: "wx" });
  await rename(temporary, path);
}

/** The primary version (validation guarantees exactly one). */
export function primaryVersion(keyring: Keyring): KeyringVersion {
  return keyring.versions.find((version) => version.state === "primary") as KeyringVersion;
}
