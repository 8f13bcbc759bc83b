import { randomUUID } from "node:crypto";
import { status } from "@grpc/grpc-js";
import { services } from "../wire/protos.js";
import { grpcAddress } from "../wire/socket-address.js";
import { UnaryConnection } from "../wire/unary-connection.js";

interface WireRecord<Value> {
  workspace: string;
  resource: string;
  record_id: string;
  fields: Record<string, Value>;
}

export interface PlainFields {
  readonly workspace: string;
  readonly recordId: string;
  readonly fields: Readonly<Record<string, Uint8Array>>;
}

export interface SealedFields {
  readonly workspace: string;
  readonly recordId: string;
  readonly fields: Readonly<Record<string, string>>;
}

/**
 * The daemon's field service (proto/kms_envelope/field/v1): one Seal or Open round trip per
 * batch of records of one resource; the workspace keys never leave the daemon.
 */
export class FieldServiceClient {
  readonly #field: UnaryConnection;
  readonly #kms: UnaryConnection;

  constructor(options: { socketPath: string; timeoutMs: number }) {
    const label = `kms-envelope daemon at ${options.socketPath}`;
    // The daemon answers bad values with INVALID_ARGUMENT and unknown or retired key
    // versions with NOT_FOUND (SPEC.md §4): those are the record's fault, not an outage.
    const connection = {
      address: grpcAddress(options.socketPath),
      timeoutMs: options.timeoutMs,
      label,
    };
    this.#field = new UnaryConnection(services.field, {
      ...connection,
      refusals: {
        [status.INVALID_ARGUMENT]: "DECRYPTION_FAILED",
        [status.NOT_FOUND]: "UNKNOWN_KEY_ID",
      },
    });
    this.#kms = new UnaryConnection(services.kmsV2, connection);
  }

  async seal(
    resource: string,
    records: readonly PlainFields[],
  ): Promise<{ records: SealedFields[]; keyId: string }> {
    const answer = await this.#field.call<{ records: WireRecord<string>[]; key_id: string }>(
      "Seal",
      { uid: randomUUID(), records: records.map((record) => toWire(resource, record)) },
    );
    return { records: answer.records.map(fromWire), keyId: answer.key_id };
  }

  async open(
    resource: string,
    records: readonly SealedFields[],
  ): Promise<{ records: PlainFields[]; stale: boolean }> {
    const answer = await this.#field.call<{ records: WireRecord<Buffer>[]; stale: boolean }>(
      "Open",
      { uid: randomUUID(), records: records.map((record) => toWire(resource, record)) },
    );
    return { records: answer.records.map(fromWire), stale: answer.stale };
  }

  /** The daemon's primary key id: what new field values are sealed under. */
  async primaryKeyId(): Promise<string> {
    return (await this.#kms.call<{ key_id: string }>("Status", {})).key_id;
  }

  close(): void {
    this.#field.close();
    this.#kms.close();
  }
}

function toWire<Value>(
  resource: string,
  record: { workspace: string; recordId: string; fields: Readonly<Record<string, Value>> },
): WireRecord<Value> {
  return {
    workspace: record.workspace,
    resource,
    record_id: record.recordId,
    fields: { ...record.fields },
  };
}

function fromWire<Value>(record: WireRecord<Value>): {
  workspace: string;
  recordId: string;
  fields: Record<string, Value>;
} {
  return { workspace: record.workspace, recordId: record.record_id, fields: record.fields };
}
