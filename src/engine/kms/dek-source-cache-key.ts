import { createHash } from "node:crypto";
import type { EncryptedObject } from "./encrypted-object.js";

function u16(value: number): Buffer {
  const out = Buffer.alloc(2);
  out.writeUInt16BE(value);
  return out;
}

function u32(value: number): Buffer {
  const out = Buffer.alloc(4);
  out.writeUInt32BE(value);
  return out;
}

/**
 * Identity of a stored DEK source, as kube-apiserver keys its cache: sha256 over the source
 * type, the encrypted source, the key id and the sorted annotations, each length-prefixed, so
 * two values differing in any of them never share a decrypted seed.
 */
export function dekSourceCacheKey(
  object: Pick<EncryptedObject, "dekSourceType" | "encryptedDekSource" | "keyId" | "annotations">,
): string {
  const hash = createHash("sha256");
  const keyId = Buffer.from(object.keyId, "utf8");
  hash.update(u32(object.dekSourceType));
  hash.update(u16(object.encryptedDekSource.length)).update(object.encryptedDekSource);
  hash.update(u16(keyId.length)).update(keyId);
  if (object.annotations.size > 0) {
    hash.update(u32(object.annotations.size));
    for (const name of [...object.annotations.keys()].sort()) {
      const nameBytes = Buffer.from(name, "utf8");
      const value = object.annotations.get(name) as Uint8Array;
      hash.update(u16(nameBytes.length)).update(nameBytes);
      hash.update(u16(value.length)).update(value);
    }
  }
  return hash.digest("base64");
}
