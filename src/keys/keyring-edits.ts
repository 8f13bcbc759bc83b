import type { CustodyProvider } from "../../providers/types.js";
import { deriveKeyId } from "../crypto/derivation.js";
import { generateMasterKey } from "../crypto/master-key.js";
import { wipe } from "../crypto/wipe.js";
import { ConfigError, KmsEnvelopeError } from "../errors.js";
import type { Keyring, KeyringVersion } from "./keyring-file.js";

/**
 * Generates a fresh 32-byte master key, wraps it through `provider` and proves the wrap by
 * unwrapping it again, so a misconfigured provider fails here and not at the next daemon start.
 * The plaintext key never leaves this function.
 */
export async function generateVersion(
  provider: CustodyProvider,
  keyRef: string,
  state: KeyringVersion["state"],
  now: Date = new Date(),
): Promise<KeyringVersion> {
  const masterKey = generateMasterKey();
  let unwrapped: Uint8Array | undefined;
  try {
    const keyId = deriveKeyId(provider.name, masterKey);
    const wrapped = await provider.wrapKey(masterKey, { keyId });
    unwrapped = await provider.unwrapKey(wrapped, { keyId });
    if (!Buffer.from(unwrapped).equals(masterKey)) {
      throw new KmsEnvelopeError(
        "PROVIDER_UNAVAILABLE",
        `provider ${provider.name} did not give back the key it wrapped: check ${keyRef}`,
      );
    }
    return {
      keyId,
      provider: provider.name,
      keyRef,
      wrappedKey: Buffer.from(wrapped).toString("base64"),
      created: now.toISOString(),
      state,
    };
  } finally {
    wipe(masterKey, unwrapped);
  }
}

/** A keyring with `version` added; key ids are never reused (KMS-CONTRACT.md §2.3). */
export function addVersion(keyring: Keyring, version: KeyringVersion): Keyring {
  if (keyring.versions.some((existing) => existing.keyId === version.keyId)) {
    throw new ConfigError(
      `key id ${version.keyId}`,
      "is already in the keyring",
      "a key id is never reused: generate another version",
    );
  }
  const demoted =
    version.state === "primary"
      ? keyring.versions.map((existing) =>
          existing.state === "primary" ? { ...existing, state: "active" as const } : existing,
        )
      : keyring.versions;
  return { ...keyring, versions: [...demoted, version] };
}

function find(keyring: Keyring, keyId: string): KeyringVersion {
  const version = keyring.versions.find((candidate) => candidate.keyId === keyId);
  if (version === undefined) {
    const known = keyring.versions.map((candidate) => candidate.keyId).join(", ");
    throw new ConfigError(`key id ${keyId}`, "is not in the keyring", `give one it has: ${known}`);
  }
  return version;
}

/** Makes an active version the primary; the old primary stays active for decryption. */
export function promoteVersion(keyring: Keyring, keyId: string): Keyring {
  const target = find(keyring, keyId);
  if (target.state === "retired") {
    throw new ConfigError(
      `key id ${keyId}`,
      "is retired, and a retired version is never promoted",
      "generate a new one with rotate",
    );
  }
  return {
    ...keyring,
    versions: keyring.versions.map((version) => {
      if (version.keyId === keyId) return { ...version, state: "primary" as const };
      return version.state === "primary" ? { ...version, state: "active" as const } : version;
    }),
  };
}

/** Retires a version: the daemon stops loading it, and values under it stop decrypting. */
export function retireVersion(keyring: Keyring, keyId: string): Keyring {
  const target = find(keyring, keyId);
  if (target.state === "primary") {
    throw new ConfigError(
      `key id ${keyId}`,
      "is the primary version",
      "rotate to a new primary before retiring it",
    );
  }
  return {
    ...keyring,
    versions: keyring.versions.map((version) =>
      version.keyId === keyId ? { ...version, state: "retired" as const } : version,
    ),
  };
}
