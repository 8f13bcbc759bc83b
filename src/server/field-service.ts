import { InvalidRequestError } from "../errors.js";
import type { Envelope, PlainRecord, SealedRecord } from "../keys/envelope.js";
import type { DaemonMetrics } from "../ops/metrics.js";
import type { ServiceHandlers } from "./grpc-server.js";

/** Most records one Seal or Open call may carry; larger jobs are split by the client. */
export const MAX_RECORDS_PER_BATCH = 10_000;
// Names end up inside length prefixes (≤ 65535 bytes); far smaller caps catch misuse early.
const MAX_NAME_BYTES = 1024;

interface WireRecord<Value> {
  workspace: string;
  resource: string;
  record_id: string;
  fields: Record<string, Value>;
}

function checkName(value: string, what: string, index: number): void {
  if (value === "") throw new InvalidRequestError(`records[${index}].${what} is required`);
  if (Buffer.byteLength(value) > MAX_NAME_BYTES) {
    throw new InvalidRequestError(
      `records[${index}].${what} is longer than ${MAX_NAME_BYTES} bytes`,
    );
  }
}

function fromWire<Value>(
  records: WireRecord<Value>[],
): { workspace: string; resource: string; recordId: string; fields: Record<string, Value> }[] {
  if (records.length > MAX_RECORDS_PER_BATCH) {
    throw new InvalidRequestError(
      `a batch holds at most ${MAX_RECORDS_PER_BATCH} records; split it`,
    );
  }
  return records.map((record, index) => {
    checkName(record.workspace, "workspace", index);
    checkName(record.resource, "resource", index);
    checkName(record.record_id, "record_id", index);
    for (const field of Object.keys(record.fields)) checkName(field, "fields key", index);
    return {
      workspace: record.workspace,
      resource: record.resource,
      recordId: record.record_id,
      fields: record.fields,
    };
  });
}

function toWire<Value>(record: {
  workspace: string;
  resource: string;
  recordId: string;
  fields: Record<string, Value>;
}): WireRecord<Value> {
  return {
    workspace: record.workspace,
    resource: record.resource,
    record_id: record.recordId,
    fields: record.fields,
  };
}

function countFields(records: { fields: object }[]): number {
  return records.reduce((sum, record) => sum + Object.keys(record.fields).length, 0);
}

/** Handlers of `kms_envelope.field.v1.FieldService`. */
export function fieldService(envelope: Envelope, metrics: DaemonMetrics): ServiceHandlers {
  return {
    Seal: (request: { records: WireRecord<Buffer>[] }) => {
      const records: PlainRecord[] = fromWire(request.records);
      const sealed = envelope.sealRecords(records);
      metrics.countFieldValues("seal", countFields(records));
      return { records: sealed.records.map(toWire), key_id: sealed.keyId };
    },
    Open: (request: { records: WireRecord<string>[] }) => {
      const records: SealedRecord[] = fromWire(request.records);
      const opened = envelope.openRecords(records);
      metrics.countFieldValues("open", countFields(records));
      return { records: opened.records.map(toWire), stale: opened.stale };
    },
  };
}
