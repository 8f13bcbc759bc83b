import { status } from "@grpc/grpc-js";
import { crc32c } from "../../../providers/crc32c.js";
import { type CryptoKey, type KeyStore, type KeyVersion, KmsStatusError } from "./key-store.js";

/** google.protobuf.Int64Value as @grpc/proto-loader decodes it (longs as strings). */
export interface Int64Value {
  value?: string | number | null;
}

/** EncryptRequest (service.proto), camelCase. */
export interface EncryptRequest {
  name?: string;
  plaintext?: Buffer;
  additionalAuthenticatedData?: Buffer;
  plaintextCrc32c?: Int64Value | null;
  additionalAuthenticatedDataCrc32c?: Int64Value | null;
}

/** EncryptResponse (service.proto), camelCase. */
export interface EncryptResponse {
  name: string;
  ciphertext: Buffer;
  ciphertextCrc32c: Int64Value;
  verifiedPlaintextCrc32c: boolean;
  verifiedAdditionalAuthenticatedDataCrc32c: boolean;
  protectionLevel: "SOFTWARE";
}

/** DecryptRequest (service.proto), camelCase. */
export interface DecryptRequest {
  name?: string;
  ciphertext?: Buffer;
  additionalAuthenticatedData?: Buffer;
  ciphertextCrc32c?: Int64Value | null;
  additionalAuthenticatedDataCrc32c?: Int64Value | null;
}

/** DecryptResponse (service.proto): note there is no verified_ciphertext_crc32c here. */
export interface DecryptResponse {
  plaintext: Buffer;
  plaintextCrc32c: Int64Value;
  usedPrimary: boolean;
  protectionLevel: "SOFTWARE";
}

// Cloud KMS limits for SOFTWARE keys: plaintext and AAD up to 64 KiB each (EncryptRequest docs).
const MAX_INPUT_BYTES = 64 * 1024;

/** Encrypt with the CRC32C contract: verify what was sent, say so, checksum what is returned. */
export function encrypt(store: KeyStore, request: EncryptRequest): EncryptResponse {
  const name = requireName(request.name);
  const plaintext = request.plaintext ?? Buffer.alloc(0);
  const aad = request.additionalAuthenticatedData ?? Buffer.alloc(0);
  if (plaintext.length === 0 || plaintext.length > MAX_INPUT_BYTES) {
    throw new KmsStatusError(status.INVALID_ARGUMENT, "The plaintext must be 1 to 65536 bytes.");
  }
  if (aad.length > MAX_INPUT_BYTES) {
    throw new KmsStatusError(status.INVALID_ARGUMENT, "The AAD must be at most 65536 bytes.");
  }
  const verifiedPlaintext = verifyChecksum(request.plaintextCrc32c, plaintext, "plaintext");
  const verifiedAad = verifyChecksum(
    request.additionalAuthenticatedDataCrc32c,
    aad,
    "additional_authenticated_data",
  );
  const { version, ciphertext } = store.encrypt(name, plaintext, aad);
  return {
    name: version.name,
    ciphertext,
    ciphertextCrc32c: { value: String(crc32c(ciphertext)) },
    verifiedPlaintextCrc32c: verifiedPlaintext,
    verifiedAdditionalAuthenticatedDataCrc32c: verifiedAad,
    protectionLevel: "SOFTWARE",
  };
}

/** Decrypt: `name` is the CryptoKey; the version comes from the ciphertext. */
export function decrypt(store: KeyStore, request: DecryptRequest): DecryptResponse {
  const name = requireName(request.name);
  const ciphertext = request.ciphertext ?? Buffer.alloc(0);
  const aad = request.additionalAuthenticatedData ?? Buffer.alloc(0);
  verifyChecksum(request.ciphertextCrc32c, ciphertext, "ciphertext");
  verifyChecksum(request.additionalAuthenticatedDataCrc32c, aad, "additional_authenticated_data");
  const key = store.requireKey(name);
  const { version, plaintext } = store.decrypt(name, ciphertext, aad);
  return {
    plaintext,
    plaintextCrc32c: { value: String(crc32c(plaintext)) },
    usedPrimary: version === key.primary,
    protectionLevel: "SOFTWARE",
  };
}

/** GetCryptoKey: the key with its primary version (state included). */
export function getCryptoKey(store: KeyStore, request: { name?: string }): object {
  return cryptoKeyResource(store.requireKey(requireName(request.name)));
}

/** GetCryptoKeyVersion. */
export function getCryptoKeyVersion(store: KeyStore, request: { name?: string }): object {
  return versionResource(store.requireVersion(requireName(request.name)));
}

/**
 * Server side of the data-integrity contract: an absent checksum is "not verified" (false);
 * a present one must match or the call fails with INVALID_ARGUMENT in the real service's words
 * ("The checksum in field plaintext_crc32c did not match the data in field plaintext.").
 */
function verifyChecksum(sent: Int64Value | null | undefined, data: Buffer, field: string): boolean {
  if (sent === undefined || sent === null) return false;
  if (Number(sent.value ?? 0) !== crc32c(data)) {
    throw new KmsStatusError(
      status.INVALID_ARGUMENT,
      `The checksum in field ${field}_crc32c did not match the data in field ${field}.`,
    );
  }
  return true;
}

function requireName(name: string | undefined): string {
  if (name === undefined || name === "") {
    throw new KmsStatusError(status.INVALID_ARGUMENT, "The name field is required.");
  }
  return name;
}

function cryptoKeyResource(key: CryptoKey): object {
  return {
    name: key.name,
    primary: versionResource(key.primary),
    purpose: "ENCRYPT_DECRYPT",
    createTime: timestamp(key.createTime),
    versionTemplate: { protectionLevel: "SOFTWARE", algorithm: "GOOGLE_SYMMETRIC_ENCRYPTION" },
  };
}

function versionResource(version: KeyVersion): object {
  return {
    name: version.name,
    state: version.state,
    protectionLevel: "SOFTWARE",
    algorithm: "GOOGLE_SYMMETRIC_ENCRYPTION",
    createTime: timestamp(version.createTime),
  };
}

function timestamp(date: Date): { seconds: string; nanos: number } {
  const milliseconds = date.getTime();
  return { seconds: String(Math.floor(milliseconds / 1000)), nanos: (milliseconds % 1000) * 1e6 };
}
