import { randomBytes } from "node:crypto";
import { clientError, validationError } from "./errors.js";
import { type EmulatedKey, type EncryptionContext, type KeyStore, parseBlob } from "./key-store.js";

/** The KMS operations the emulator serves (`X-Amz-Target: TrentService.<Operation>`). */
export const OPERATIONS = ["Encrypt", "Decrypt", "DescribeKey", "GenerateDataKey"] as const;
/** One served operation. */
export type Operation = (typeof OPERATIONS)[number];

/** Response members; blobs are Buffers, base64-encoded by the server. */
export type OperationOutput = Record<string, unknown>;

/** Emulator state an operation reads besides the keys. */
export interface OperationEnvironment {
  store: KeyStore;
  /** Whether the caller's policies deny this operation (AccessDeniedException). */
  denied(operation: Operation): boolean;
}

const ALGORITHM = "SYMMETRIC_DEFAULT";
const MAX_PLAINTEXT = 4096;
const MAX_CIPHERTEXT = 6144;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Runs one operation on a parsed JSON request body. */
export function runOperation(
  operation: Operation,
  input: Record<string, unknown>,
  environment: OperationEnvironment,
): OperationOutput {
  switch (operation) {
    case "Encrypt":
      return encrypt(input, environment);
    case "Decrypt":
      return decrypt(input, environment);
    case "DescribeKey":
      return describeKey(input, environment);
    case "GenerateDataKey":
      return generateDataKey(input, environment);
  }
}

function encrypt(
  input: Record<string, unknown>,
  environment: OperationEnvironment,
): OperationOutput {
  const key = usableKey(operationKey(input, "Encrypt", environment));
  const plaintext = blobMember(input, "Plaintext", MAX_PLAINTEXT);
  checkAlgorithm(input);
  const ciphertext = environment.store.seal(key, plaintext, contextMember(input));
  return { CiphertextBlob: ciphertext, KeyId: key.arn, EncryptionAlgorithm: ALGORITHM };
}

function decrypt(
  input: Record<string, unknown>,
  environment: OperationEnvironment,
): OperationOutput {
  const blob = parseBlob(blobMember(input, "CiphertextBlob", MAX_CIPHERTEXT));
  const context = contextMember(input);
  checkAlgorithm(input);
  if (input.KeyId !== undefined) {
    const named = operationKey(input, "Decrypt", environment);
    if (named.keyId !== blob.keyId) {
      throw clientError(
        "IncorrectKeyException",
        "The key ID in the request does not identify a KMS key that can perform this operation.",
      );
    }
  }
  const key = environment.store.keyById(blob.keyId);
  if (key === undefined) {
    if (environment.store.wasDeleted(blob.keyId)) {
      const { region, accountId } = environment.store;
      throw clientError(
        "NotFoundException",
        `Key 'arn:aws:kms:${region}:${accountId}:key/${blob.keyId}' does not exist`,
      );
    }
    throw clientError("InvalidCiphertextException");
  }
  checkAccess(key, "Decrypt", environment);
  usableKey(key);
  const plaintext = environment.store.open(key, blob, context);
  return { Plaintext: plaintext, KeyId: key.arn, EncryptionAlgorithm: ALGORITHM };
}

function describeKey(
  input: Record<string, unknown>,
  environment: OperationEnvironment,
): OperationOutput {
  const key = operationKey(input, "DescribeKey", environment);
  return {
    KeyMetadata: {
      AWSAccountId: environment.store.accountId,
      KeyId: key.keyId,
      Arn: key.arn,
      CreationDate: key.creationDate.getTime() / 1000,
      Enabled: key.state === "Enabled",
      Description: key.description,
      KeyUsage: "ENCRYPT_DECRYPT",
      KeyState: key.state,
      ...(key.deletionDate === undefined
        ? {}
        : { DeletionDate: key.deletionDate.getTime() / 1000 }),
      Origin: "AWS_KMS",
      KeyManager: "CUSTOMER",
      CustomerMasterKeySpec: ALGORITHM,
      KeySpec: ALGORITHM,
      EncryptionAlgorithms: [ALGORITHM],
      MultiRegion: false,
    },
  };
}

function generateDataKey(
  input: Record<string, unknown>,
  environment: OperationEnvironment,
): OperationOutput {
  const key = usableKey(operationKey(input, "GenerateDataKey", environment));
  const { KeySpec: keySpec, NumberOfBytes: numberOfBytes } = input;
  let length: number;
  if (keySpec !== undefined && numberOfBytes === undefined) {
    if (keySpec !== "AES_256" && keySpec !== "AES_128") {
      throw validationError(
        `Value '${String(keySpec)}' at 'keySpec' failed to satisfy constraint: Member must satisfy enum value set: [AES_256, AES_128]`,
      );
    }
    length = keySpec === "AES_256" ? 32 : 16;
  } else if (keySpec === undefined && typeof numberOfBytes === "number") {
    if (!Number.isInteger(numberOfBytes) || numberOfBytes < 1 || numberOfBytes > 1024) {
      throw validationError(
        `Value '${numberOfBytes}' at 'numberOfBytes' failed to satisfy constraint: Member must have value between 1 and 1024`,
      );
    }
    length = numberOfBytes;
  } else {
    throw clientError("ValidationException", "Please specify either number of bytes or key spec.");
  }
  const plaintext = randomBytes(length);
  const ciphertext = environment.store.seal(key, plaintext, contextMember(input));
  return { CiphertextBlob: ciphertext, Plaintext: plaintext, KeyId: key.arn };
}

// Resolves the request's KeyId and checks the caller may use it for this operation.
function operationKey(
  input: Record<string, unknown>,
  operation: Operation,
  environment: OperationEnvironment,
): EmulatedKey {
  const keyId = input.KeyId;
  if (typeof keyId !== "string" || keyId.length < 1 || keyId.length > 2048) {
    throw validationError(
      "Value null at 'keyId' failed to satisfy constraint: Member must not be null",
    );
  }
  const key = environment.store.resolve(keyId);
  checkAccess(key, operation, environment);
  return key;
}

function checkAccess(
  key: EmulatedKey,
  operation: Operation,
  environment: OperationEnvironment,
): void {
  if (!environment.denied(operation)) return;
  const principal = `arn:aws:iam::${environment.store.accountId}:user/emulator`;
  throw clientError(
    "AccessDeniedException",
    `User: ${principal} is not authorized to perform: kms:${operation} on resource: ${key.arn} because no resource-based policy allows the kms:${operation} action`,
  );
}

function usableKey(key: EmulatedKey): EmulatedKey {
  if (key.state === "Disabled") throw clientError("DisabledException", `${key.arn} is disabled.`);
  if (key.state === "PendingDeletion") {
    throw clientError("KMSInvalidStateException", `${key.arn} is pending deletion.`);
  }
  return key;
}

function checkAlgorithm(input: Record<string, unknown>): void {
  const algorithm = input.EncryptionAlgorithm;
  if (algorithm !== undefined && algorithm !== ALGORITHM) {
    throw clientError(
      "InvalidKeyUsageException",
      `The encryption algorithm ${String(algorithm)} is not compatible with the type of key material in this KMS key.`,
    );
  }
}

function blobMember(input: Record<string, unknown>, member: string, maximum: number): Buffer {
  const value = input[member];
  const field = member.charAt(0).toLowerCase() + member.slice(1);
  if (typeof value !== "string") {
    throw validationError(
      `Value null at '${field}' failed to satisfy constraint: Member must not be null`,
    );
  }
  if (!BASE64.test(value))
    throw clientError("SerializationException", `Invalid base64 in ${member}`);
  const bytes = Buffer.from(value, "base64");
  if (bytes.length < 1 || bytes.length > maximum) {
    throw validationError(
      `Value at '${field}' failed to satisfy constraint: Member must have length between 1 and ${maximum}`,
    );
  }
  return bytes;
}

function contextMember(input: Record<string, unknown>): EncryptionContext {
  const value = input.EncryptionContext;
  if (value === undefined || value === null) return {};
  if (typeof value !== "object" || Array.isArray(value)) {
    throw clientError("SerializationException", "EncryptionContext must be a map of strings");
  }
  const context: EncryptionContext = {};
  for (const [name, entry] of Object.entries(value)) {
    if (typeof entry !== "string")
      throw clientError("SerializationException", "EncryptionContext must be a map of strings");
    context[name] = entry;
  }
  return context;
}
