import { join } from "node:path";
import protobuf from "protobufjs";
import { MalformedCiphertextError } from "../../errors.js";
import { PACKAGE_ROOT } from "../../package-info.js";
import { annotationsProblem, encryptedDekSourceProblem, keyIdProblem } from "./kms-v2-rules.js";

/** What encryptedDEKSource decrypts to (KMS-CONTRACT.md §3.1). */
export enum DekSourceType {
  AesGcmKey = 0,
  HkdfSha256XNonceAesGcmSeed = 1,
}

/** The KMS v2 value stored after the `k8s:enc:kms:v2:<name>:` prefix. */
export interface EncryptedObject {
  readonly encryptedData: Uint8Array;
  readonly keyId: string;
  readonly encryptedDekSource: Uint8Array;
  readonly annotations: ReadonlyMap<string, Uint8Array>;
  readonly dekSourceType: DekSourceType;
}

const root = protobuf.loadSync(
  join(
    PACKAGE_ROOT,
    "proto/k8s.io/apiserver/pkg/storage/value/encrypt/envelope/kmsv2/v2/api.proto",
  ),
);
const messageType = root.lookupType("v2.EncryptedObject");

/** kube-apiserver's ValidateEncryptedObject: applied before writing and after reading. */
function validateEncryptedObject(object: EncryptedObject): void {
  const problem =
    (object.encryptedData.length === 0 ? "encryptedData is empty" : undefined) ??
    keyIdProblem(object.keyId) ??
    encryptedDekSourceProblem(object.encryptedDekSource) ??
    annotationsProblem(object.annotations) ??
    (object.dekSourceType in DekSourceType
      ? undefined
      : `unknown encryptedDEKSourceType ${object.dekSourceType}`);
  if (problem !== undefined) throw new MalformedCiphertextError(problem);
}

/** Plain proto3 marshalling, as Go's proto.Marshal: default values are omitted. */
export function encodeEncryptedObject(object: EncryptedObject): Uint8Array {
  validateEncryptedObject(object);
  const message: Record<string, unknown> = {
    encryptedData: object.encryptedData,
    keyID: object.keyId,
    encryptedDEKSource: object.encryptedDekSource,
  };
  if (object.annotations.size > 0) message.annotations = Object.fromEntries(object.annotations);
  if (object.dekSourceType !== DekSourceType.AesGcmKey)
    message.encryptedDEKSourceType = object.dekSourceType;
  return messageType.encode(messageType.fromObject(message)).finish();
}

export function decodeEncryptedObject(bytes: Uint8Array): EncryptedObject {
  let decoded: Record<string, unknown>;
  try {
    decoded = messageType.toObject(messageType.decode(bytes), {
      bytes: Buffer,
      enums: Number,
      defaults: true,
    });
  } catch {
    throw new MalformedCiphertextError("the kms v2 value is not an EncryptedObject protobuf");
  }
  const object: EncryptedObject = {
    encryptedData: decoded.encryptedData as Uint8Array,
    keyId: decoded.keyID as string,
    encryptedDekSource: decoded.encryptedDEKSource as Uint8Array,
    annotations: new Map(
      Object.entries((decoded.annotations ?? {}) as Record<string, ArrayLike<number>>).map(
        // protobufjs fills a map entry that omits its value with [] instead of empty bytes; an
        // omitted field is its default, as Go reads it, and the cache key hashes real bytes.
        ([key, value]) => [key, Buffer.isBuffer(value) ? value : Buffer.from(value)],
      ),
    ),
    dekSourceType: decoded.encryptedDEKSourceType as DekSourceType,
  };
  validateEncryptedObject(object);
  return object;
}
