/** A field-service record in the code's own names (recordId, not record_id). */
export interface FieldRecord<Value> {
  workspace: string;
  resource: string;
  recordId: string;
  fields: Record<string, Value>;
}

/** The one mapping to the proto's records (kms_envelope.field.v1), used by daemon and client. */
export function recordToWire<Value>(record: FieldRecord<Value>): {
  workspace: string;
  resource: string;
  record_id: string;
  fields: Record<string, Value>;
} {
  return {
    workspace: record.workspace,
    resource: record.resource,
    record_id: record.recordId,
    fields: record.fields,
  };
}

/** The one mapping from the proto's records (decoded: every field present). */
export function recordFromWire<Value>(record: {
  workspace: string;
  resource: string;
  record_id: string;
  fields: Record<string, Value>;
}): FieldRecord<Value> {
  return {
    workspace: record.workspace,
    resource: record.resource,
    recordId: record.record_id,
    fields: record.fields,
  };
}
