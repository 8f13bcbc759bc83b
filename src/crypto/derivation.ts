import { createHmac } from "node:crypto";
import { NativeHmacSha256 } from "./hmac-sha256.js";
import { lengthPrefixed } from "./length-prefix.js";
import { type SodiumNative, sodiumNativeInUse } from "./secretbox.js";

/** Size in bytes of workspace keys and record keys (HMAC-SHA256 output). */
export const KEY_BYTES = 32;

const KEY_ID_LABEL = "kms-envelope/v1/key-id";
const WORKSPACE_LABEL = Buffer.from("kms-envelope/v1/workspace\u0000", "utf8");

/**
 * Key id of a master key (SPEC.md §2): "<provider>:" + the first 16 characters of
 * base64url(HMAC-SHA256(M, "kms-envelope/v1/key-id")). Public by design: it names the key
 * version without revealing it, as KEP-3299 asks of key_id.
 */
export function deriveKeyId(provider: string, masterKey: Uint8Array): string {
  const tag = createHmac("sha256", masterKey).update(KEY_ID_LABEL).digest();
  return `${provider}:${tag.toString("base64url").slice(0, 16)}`;
}

/**
 * Workspace key W = HMAC-SHA256(M, "kms-envelope/v1/workspace" || 0x00 || lp(workspace)).
 * Deterministic, so derived keys are never stored (SPEC.md §2).
 */
export function deriveWorkspaceKey(masterKey: Uint8Array, workspace: string): Buffer {
  return createHmac("sha256", masterKey)
    .update(WORKSPACE_LABEL)
    .update(lengthPrefixed(workspace))
    .digest();
}

const FIRST_BLOCK = Buffer.from([0x01]);

let nativeHmac: { addon: SodiumNative; hmac: NativeHmacSha256 } | undefined;
const pseudorandomKey = new Uint8Array(KEY_BYTES);

/** The native HMAC when sodium-native is the libsodium in use (see loadSecretbox). */
function hmacInUse(): NativeHmacSha256 | undefined {
  const addon = sodiumNativeInUse();
  if (addon === undefined) return undefined;
  if (nativeHmac?.addon !== addon) nativeHmac = { addon, hmac: new NativeHmacSha256(addon) };
  return nativeHmac.hmac;
}

/**
 * Record key K = HKDF-SHA256(ikm = W, salt = nonce, info = context, 32 bytes) (RFC 5869).
 * The random nonce doubles as the salt, so every sealed value has its own key.
 *
 * Written out with HMAC because L = 32 = HashLen needs only one expand block:
 * PRK = HMAC(salt, IKM), K = HMAC(PRK, info || 0x01). hkdfSync gives the same bytes (RFC 5869
 * vectors in test/vectors) at several times the cost; the HMACs run on sodium-native's SHA-256
 * where it is the libsodium in use (no object per call), else on node:crypto.
 */
export function deriveRecordKey(
  workspaceKey: Uint8Array,
  nonce: Uint8Array,
  context: Uint8Array,
): Uint8Array {
  const recordKey = Buffer.allocUnsafe(KEY_BYTES);
  deriveRecordKeyInto(recordKey, workspaceKey, nonce, context);
  return recordKey;
}

/** deriveRecordKey() into `out` (32 bytes), which the caller wipes. */
export function deriveRecordKeyInto(
  out: Uint8Array,
  workspaceKey: Uint8Array,
  nonce: Uint8Array,
  context: Uint8Array,
): void {
  const hmac = hmacInUse();
  if (hmac === undefined) {
    const pseudorandomKey = createHmac("sha256", nonce).update(workspaceKey).digest();
    try {
      const recordKey = createHmac("sha256", pseudorandomKey)
        .update(context)
        .update(FIRST_BLOCK)
        .digest();
      out.set(recordKey);
      recordKey.fill(0);
    } finally {
      pseudorandomKey.fill(0);
    }
    return;
  }
  // The pseudorandom key is scratch, zeroed here.
  try {
    hmac.macInto(pseudorandomKey, nonce, workspaceKey);
    hmac.macInto(out, pseudorandomKey, context, FIRST_BLOCK);
  } finally {
    pseudorandomKey.fill(0);
  }
}
