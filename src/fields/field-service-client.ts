import { randomUUID } from "node:crypto";
import { status } from "@grpc/grpc-js";
import { InvalidRequestError, KmsEnvelopeError } from "../errors.js";
import type { LookupQuery } from "../keys/field-lookup.js";
import { recordFromWire, recordToWire } from "../wire/field-records.js";
import type { LookupRequest } from "../wire/generated/kms_envelope/field/v1/LookupRequest.js";
import type { LookupResponse__Output } from "../wire/generated/kms_envelope/field/v1/LookupResponse.js";
import type { OpenRequest } from "../wire/generated/kms_envelope/field/v1/OpenRequest.js";
import type { OpenResponse__Output } from "../wire/generated/kms_envelope/field/v1/OpenResponse.js";
import type { SealRequest } from "../wire/generated/kms_envelope/field/v1/SealRequest.js";
import type { SealResponse__Output } from "../wire/generated/kms_envelope/field/v1/SealResponse.js";
import { services } from "../wire/protos.js";
import { grpcAddress } from "../wire/socket-address.js";
import { UnaryConnection } from "../wire/unary-connection.js";

interface PlainFields {
  readonly workspace: string;
  readonly recordId: string;
  readonly fields: Readonly<Record<string, Uint8Array>>;
}

interface SealedFields {
  readonly workspace: string;
  readonly recordId: string;
  readonly fields: Readonly<Record<string, string>>;
}

// A refused Seal or Lookup is a bad request (a bad name, an unknown normalizer, too many
// values), not a record that does not decrypt.
const REQUEST_REFUSALS = { [status.INVALID_ARGUMENT]: "INVALID_REQUEST" } as const;

/** The UTF-8 of a value, refusing text that has none (a lone surrogate would become U+FFFD). */
function utf8Of(value: string, index: number): Buffer {
  if (/\p{Cs}/u.test(value)) {
    throw new InvalidRequestError(
      `values[${index}] is not well-formed Unicode (it has a lone surrogate): pass text that has a UTF-8 form`,
    );
  }
  return Buffer.from(value, "utf8");
}

/**
 * The daemon's field service (proto/kms_envelope/field/v1): one Seal, Open or Lookup round trip
 * per batch; the workspace keys never leave the daemon.
 */
export class FieldServiceClient {
  readonly #field: UnaryConnection;
  readonly #kms: UnaryConnection;
  readonly #label: string;

  constructor(options: { socketPath: string; timeoutMs: number }) {
    const label = `kms-envelope daemon at ${options.socketPath}`;
    // The daemon answers bad values with INVALID_ARGUMENT and unknown or retired key
    // versions with NOT_FOUND (SPEC.md §4): those are the record's fault, not an outage.
    const connection = {
      address: grpcAddress(options.socketPath),
      timeoutMs: options.timeoutMs,
      label,
    };
    const daemon = {
      ...connection,
      failure: {
        code: "DAEMON_UNREACHABLE",
        remedy: `check that the daemon is running and healthy (kms-envelope status --socket ${options.socketPath})`,
      },
    } as const;
    this.#field = new UnaryConnection(services.field, {
      ...daemon,
      refusals: {
        [status.INVALID_ARGUMENT]: "DECRYPTION_FAILED",
        [status.NOT_FOUND]: "UNKNOWN_KEY_ID",
      },
    });
    this.#kms = new UnaryConnection(services.kmsV2, daemon);
    this.#label = label;
  }

  async seal(
    resource: string,
    records: readonly PlainFields[],
  ): Promise<{ records: SealedFields[]; keyId: string }> {
    const request: SealRequest = {
      uid: randomUUID(),
      records: records.map((record) => recordToWire({ ...record, resource })),
    };
    const answer = await this.#field.call<SealResponse__Output>("Seal", request, REQUEST_REFUSALS);
    const sealed = answer.records.map(recordFromWire);
    this.#checkAnswer("Seal", records, sealed);
    return { records: sealed, keyId: answer.key_id };
  }

  async open(
    resource: string,
    records: readonly SealedFields[],
  ): Promise<{ records: PlainFields[]; stale: boolean; keyId: string }> {
    const request: OpenRequest = {
      uid: randomUUID(),
      records: records.map((record) => recordToWire({ ...record, resource })),
    };
    const answer = await this.#field.call<OpenResponse__Output>("Open", request);
    const opened = answer.records.map(recordFromWire);
    this.#checkAnswer("Open", records, opened);
    return {
      records: opened,
      stale: answer.stale,
      keyId: answer.key_id,
    };
  }

  /**
   * The lookup tokens (SPEC.md §2.1) of `values` of one field: for each value, its token under
   * every master-key version the daemon holds, the primary's (`keyId`) first. Normalizers are
   * applied by the daemon, in the order given.
   */
  async lookup(query: LookupQuery): Promise<{ tokens: string[][]; keyId: string }> {
    const request: LookupRequest = {
      uid: randomUUID(),
      workspace: query.workspace,
      resource: query.resource,
      field: query.field,
      normalizers: [...query.normalizers],
      values: query.values.map(utf8Of),
    };
    const answer = await this.#field.call<LookupResponse__Output>(
      "Lookup",
      request,
      REQUEST_REFUSALS,
    );
    return { tokens: answer.values.map((value) => value.tokens), keyId: answer.key_id };
  }

  /** The daemon's primary key id: what new field values are sealed under. */
  async primaryKeyId(): Promise<string> {
    return (await this.#kms.call<{ key_id: string }>("Status", {})).key_id;
  }

  /**
   * The answer must hold exactly the records and fields asked about, in order: a missing field
   * would otherwise read as empty bytes or be stored as nothing at all.
   */
  #checkAnswer(
    method: string,
    asked: readonly { recordId: string; fields: Readonly<Record<string, unknown>> }[],
    answered: readonly { recordId: string; fields: Readonly<Record<string, unknown>> }[],
  ): void {
    const shape = (record: (typeof asked)[number]) =>
      JSON.stringify([record.recordId, Object.keys(record.fields).sort()]);
    const same =
      asked.length === answered.length &&
      asked.every((record, index) => shape(record) === shape(answered[index] as typeof record));
    if (!same) {
      throw new KmsEnvelopeError(
        "DAEMON_UNREACHABLE",
        `${this.#label}: ${method} answered other records or fields than it was asked for; check that the socket is a kms-envelope daemon of this version`,
      );
    }
  }

  close(): void {
    this.#field.close();
    this.#kms.close();
  }
}
