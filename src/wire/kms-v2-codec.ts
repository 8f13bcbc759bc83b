// The four KMS v2 messages kube-apiserver sends and reads on every Encrypt and Decrypt
// (proto/k8s.io/kms/apis/v2/api.proto), decoded and encoded by hand: protobufjs builds a message
// object and then a plain copy of it per call, a visible share of the daemon's CPU at KMS call
// rates. The bytes are the same; test/property/kms-v2-codec.test.ts holds it to protobufjs.
import type { MethodDefinition, ServiceDefinition } from "@grpc/grpc-js";
import type { DecryptRequest__Output } from "./generated/v2/DecryptRequest.js";
import type { DecryptResponse } from "./generated/v2/DecryptResponse.js";
import type { EncryptRequest__Output } from "./generated/v2/EncryptRequest.js";
import type { EncryptResponse } from "./generated/v2/EncryptResponse.js";
import {
  lengthDelimitedSize,
  MalformedProtobufError,
  ProtobufReader,
  WIRE_LENGTH_DELIMITED,
  writeLengthDelimitedHeader,
} from "./protobuf-wire.js";

const EMPTY: Buffer = Buffer.alloc(0);
// kube-apiserver sends no annotations (the daemon never returns any): one shared empty map.
const NO_ANNOTATIONS: Record<string, Buffer> = Object.freeze({}) as Record<string, Buffer>;

/** A length-delimited field's tag: field number × 8 + 2. */
function delimited(field: number): number {
  return field * 8 + WIRE_LENGTH_DELIMITED;
}

function utf8(message: Buffer, reader: ProtobufReader): string {
  const start = reader.lengthDelimited();
  return message.toString("utf8", start, reader.offset);
}

function bytes(message: Buffer, reader: ProtobufReader): Buffer {
  const start = reader.lengthDelimited();
  return message.subarray(start, reader.offset);
}

/** A field of the wrong wire type is malformed; an unknown one is skipped (proto3 rules). */
function skipOther(reader: ProtobufReader, tag: number, known: number): void {
  if (tag >>> 3 <= known)
    throw new MalformedProtobufError(`field ${tag >>> 3} has wire type ${tag & 7}`);
  reader.skip(tag & 7);
}

/** EncryptRequest: plaintext = 1, uid = 2. The plaintext is a view of `message`. */
export function decodeEncryptRequest(message: Buffer): EncryptRequest__Output {
  const reader = new ProtobufReader(message);
  let plaintext = EMPTY;
  let uid = "";
  while (!reader.done) {
    const tag = reader.tag();
    if (tag === delimited(1)) plaintext = bytes(message, reader);
    else if (tag === delimited(2)) uid = utf8(message, reader);
    else skipOther(reader, tag, 2);
  }
  return { plaintext, uid };
}

/** One entry of a map<string, bytes>: key = 1, value = 2. */
function mapEntry(message: Buffer, into: Record<string, Buffer>, reader: ProtobufReader): void {
  const start = reader.lengthDelimited();
  const entry = new ProtobufReader(message, start, reader.offset);
  let key = "";
  let value = EMPTY;
  while (!entry.done) {
    const tag = entry.tag();
    if (tag === delimited(1)) key = utf8(message, entry);
    else if (tag === delimited(2)) value = bytes(message, entry);
    else skipOther(entry, tag, 2);
  }
  // A key such as "__proto__" must be an own entry, not a prototype change.
  Object.defineProperty(into, key, { value, enumerable: true, writable: true, configurable: true });
}

/** DecryptRequest: ciphertext = 1, uid = 2, key_id = 3, annotations = 4. */
export function decodeDecryptRequest(message: Buffer): DecryptRequest__Output {
  const reader = new ProtobufReader(message);
  let ciphertext = EMPTY;
  let uid = "";
  let keyId = "";
  let annotations = NO_ANNOTATIONS;
  while (!reader.done) {
    const tag = reader.tag();
    if (tag === delimited(1)) ciphertext = bytes(message, reader);
    else if (tag === delimited(2)) uid = utf8(message, reader);
    else if (tag === delimited(3)) keyId = utf8(message, reader);
    else if (tag === delimited(4)) {
      if (annotations === NO_ANNOTATIONS) annotations = {};
      mapEntry(message, annotations, reader);
    } else skipOther(reader, tag, 4);
  }
  return { ciphertext, uid, key_id: keyId, annotations };
}

// A field is written whenever the response sets it, even empty, as protobufjs wrote it before:
// the bytes the daemon answers stay what they were.
function writeField(
  out: Buffer,
  offset: number,
  field: number,
  value: Uint8Array | undefined,
): number {
  if (value === undefined) return offset;
  const at = writeLengthDelimitedHeader(out, offset, field, value.length);
  out.set(value, at);
  return at + value.length;
}

function fieldSize(value: Uint8Array | undefined): number {
  return value === undefined ? 0 : lengthDelimitedSize(value.length);
}

/** DecryptResponse: plaintext = 1. */
export function encodeDecryptResponse(response: DecryptResponse): Buffer {
  const plaintext = asBytes(response.plaintext);
  const out = Buffer.allocUnsafe(fieldSize(plaintext));
  writeField(out, 0, 1, plaintext);
  return out;
}

/** EncryptResponse: ciphertext = 1, key_id = 2, annotations = 3 (map<string, bytes>). */
export function encodeEncryptResponse(response: EncryptResponse): Buffer {
  const ciphertext = asBytes(response.ciphertext);
  const keyId = response.key_id === undefined ? undefined : utf8Bytes(response.key_id);
  const annotations = response.annotations ?? {};
  let size = fieldSize(ciphertext) + fieldSize(keyId);
  const entries: { key: Buffer; value: Uint8Array; size: number }[] = [];
  for (const name in annotations) {
    if (!Object.hasOwn(annotations, name)) continue;
    const key = Buffer.from(name, "utf8");
    const value = asBytes(annotations[name]) ?? EMPTY;
    const entrySize = fieldSize(key) + fieldSize(value);
    entries.push({ key, value, size: entrySize });
    size += lengthDelimitedSize(entrySize);
  }
  const out = Buffer.allocUnsafe(size);
  let at = writeField(out, 0, 1, ciphertext);
  at = writeField(out, at, 2, keyId);
  for (const entry of entries) {
    at = writeLengthDelimitedHeader(out, at, 3, entry.size);
    at = writeField(out, at, 1, entry.key);
    at = writeField(out, at, 2, entry.value);
  }
  return out;
}

let lastKeyId: { text: string; bytes: Buffer } | undefined;

/** A key id's UTF-8 bytes, kept for the last one: every Encrypt answers the primary's. */
function utf8Bytes(text: string): Buffer {
  if (lastKeyId?.text !== text) lastKeyId = { text, bytes: Buffer.from(text, "utf8") };
  return lastKeyId.bytes;
}

// protobufjs takes a bytes field given as a string as base64.
function asBytes(value: Uint8Array | string | undefined): Uint8Array | undefined {
  if (value === undefined) return undefined;
  return typeof value === "string" ? Buffer.from(value, "base64") : value;
}

/**
 * The KMS v2 service definition with Encrypt and Decrypt on this codec; Status and the client
 * side keep protobufjs.
 */
export function withKmsV2Codec(definition: ServiceDefinition): ServiceDefinition {
  const method = (name: string): MethodDefinition<object, object> => {
    const found = definition[name];
    if (found === undefined) throw new Error(`the KMS v2 service has no ${name} method`);
    return found as MethodDefinition<object, object>;
  };
  return {
    ...definition,
    Encrypt: {
      ...method("Encrypt"),
      requestDeserialize: decodeEncryptRequest,
      responseSerialize: (response: object) => encodeEncryptResponse(response as EncryptResponse),
    },
    Decrypt: {
      ...method("Decrypt"),
      requestDeserialize: decodeDecryptRequest,
      responseSerialize: (response: object) => encodeDecryptResponse(response as DecryptResponse),
    },
  };
}
