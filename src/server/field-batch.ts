import type { MethodDefinition } from "@grpc/grpc-js";
import { wipe } from "../crypto/wipe.js";
import { InvalidRequestError } from "../errors.js";
import { lookupTokens } from "../keys/field-lookup.js";
import { openRecords, sealRecords } from "../keys/field-sealing.js";
import type { MasterKeySet } from "../keys/master-key-set.js";
import { type FieldRecord, recordFromWire, recordToWire } from "../wire/field-records.js";
import type { LookupRequest__Output } from "../wire/generated/kms_envelope/field/v1/LookupRequest.js";
import type { LookupResponse } from "../wire/generated/kms_envelope/field/v1/LookupResponse.js";
import type { OpenRequest__Output } from "../wire/generated/kms_envelope/field/v1/OpenRequest.js";
import type { OpenResponse } from "../wire/generated/kms_envelope/field/v1/OpenResponse.js";
import type { SealRequest__Output } from "../wire/generated/kms_envelope/field/v1/SealRequest.js";
import type { SealResponse } from "../wire/generated/kms_envelope/field/v1/SealResponse.js";
import { services } from "../wire/protos.js";
import { checkName } from "./field-names.js";
import { lookupQueryFromWire } from "./lookup-request.js";

/** The field service's methods, by their proto names. */
export type FieldMethod = "Seal" | "Open" | "Lookup";

/** Most records one Seal or Open call may carry; larger jobs are split by the client. */
export const MAX_RECORDS_PER_BATCH = 10_000;

/** How much one batch may ask for, so no single call can occupy a worker for long. */
export interface FieldBatchLimits {
  readonly maxFieldsPerRequest: number;
  readonly maxFieldsPerRecord: number;
}

/** One batch's answer: the serialized response, its correlation id, its size and staleness. */
interface FieldBatchResult {
  response: Uint8Array;
  uid: string | undefined;
  fields: number;
  /** Open only: some value was sealed under an older master-key version. */
  stale?: boolean;
}

const definition = services.field.service as Record<FieldMethod, MethodDefinition<object, object>>;

/** The refusal of a call with more fields than --max-fields-per-request allows. */
export function tooManyFields(limits: FieldBatchLimits): InvalidRequestError {
  return new InvalidRequestError(
    `the batch has more than ${limits.maxFieldsPerRequest} fields (--max-fields-per-request): split it into smaller batches`,
  );
}

/** Validates the batch at the edge and counts its fields; names the first bad record. */
function fromWire<Value>(
  records: {
    workspace: string;
    resource: string;
    record_id: string;
    fields: Record<string, Value>;
  }[],
  limits: FieldBatchLimits,
  firstRecord: number,
): { records: FieldRecord<Value>[]; fields: number } {
  if (records.length > MAX_RECORDS_PER_BATCH) {
    throw new InvalidRequestError(
      `a batch holds at most ${MAX_RECORDS_PER_BATCH} records; split it`,
    );
  }
  let total = 0;
  const checked = records.map((record, at) => {
    const index = firstRecord + at;
    checkName(record.workspace, `records[${index}].workspace`);
    checkName(record.resource, `records[${index}].resource`);
    checkName(record.record_id, `records[${index}].record_id`);
    const names = Object.keys(record.fields);
    if (names.length > limits.maxFieldsPerRecord) {
      throw new InvalidRequestError(
        `records[${index}] has ${names.length} fields; a record may have at most ${limits.maxFieldsPerRecord} (--max-fields-per-record)`,
      );
    }
    total += names.length;
    if (total > limits.maxFieldsPerRequest) throw tooManyFields(limits);
    for (const field of names) checkName(field, `records[${index}].fields key`);
    return recordFromWire(record);
  });
  return { records: checked, fields: total };
}

/**
 * A map entry that omits its bytes value is legal protobuf (the field's default, empty bytes),
 * but protobufjs gives [] for it: make it the empty value it means.
 */
function emptyOmittedValues(fields: Record<string, Uint8Array>): void {
  for (const [field, value] of Object.entries(fields))
    if (!(value instanceof Uint8Array))
      Object.defineProperty(fields, field, {
        value: new Uint8Array(0),
        enumerable: true,
        writable: true,
      });
}

function decode<Request>(method: FieldMethod, message: Uint8Array): Request {
  try {
    const bytes = Buffer.from(message.buffer, message.byteOffset, message.length);
    return definition[method].requestDeserialize(bytes) as Request;
  } catch {
    throw new InvalidRequestError("request is not a valid protobuf message for this method");
  }
}

/** Where a batch sits in the call it is part of, and who wants its field count early. */
interface BatchPart {
  /** Position of the batch's first record in the whole call (errors name records by it). */
  readonly firstRecord: number;
  /** Told the batch's field count once it is validated, before sealing or opening. */
  readonly counted?: (fields: number) => void;
}

/**
 * Runs one field-service call (or one part of it) from serialized request to serialized
 * response: decode, validate, seal, open or compute lookup tokens under `keys`, encode. Opened
 * plaintexts are zeroed once encoded.
 */
export function runFieldBatch(
  keys: MasterKeySet,
  method: FieldMethod,
  message: Uint8Array,
  limits: FieldBatchLimits,
  part: BatchPart = { firstRecord: 0 },
): FieldBatchResult {
  if (method === "Seal") {
    const request = decode<SealRequest__Output>(method, message);
    for (const record of request.records) emptyOmittedValues(record.fields);
    const plain = fromWire(request.records, limits, part.firstRecord);
    part.counted?.(plain.fields);
    const sealed = sealRecords(keys, plain.records);
    const answer: SealResponse = {
      records: sealed.records.map(recordToWire),
      key_id: sealed.keyId,
    };
    const response = definition.Seal.responseSerialize(answer);
    return { response, uid: request.uid, fields: plain.fields };
  }
  if (method === "Lookup") {
    const request = decode<LookupRequest__Output>(method, message);
    const query = lookupQueryFromWire(request, limits.maxFieldsPerRequest);
    const looked = lookupTokens(keys, query);
    const answer: LookupResponse = {
      values: looked.tokens.map((tokens) => ({ tokens })),
      key_id: looked.keyId,
    };
    const response = definition.Lookup.responseSerialize(answer);
    return { response, uid: request.uid, fields: query.values.length };
  }
  const request = decode<OpenRequest__Output>(method, message);
  const sealed = fromWire(request.records, limits, part.firstRecord);
  part.counted?.(sealed.fields);
  const opened = openRecords(keys, sealed.records, part.firstRecord);
  try {
    const answer: OpenResponse = {
      records: opened.records.map(recordToWire),
      stale: opened.stale,
      key_id: keys.primary.keyId,
    };
    const response = definition.Open.responseSerialize(answer);
    return { response, uid: request.uid, fields: sealed.fields, stale: opened.stale };
  } finally {
    for (const record of opened.records) wipe(...Object.values(record.fields));
  }
}
