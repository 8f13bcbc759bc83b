// Original file: proto/kms_envelope/field/v1/field.proto


/**
 * A record whose fields are plaintext bytes.
 */
export interface PlainRecord {
  /**
   * Tenant whose workspace key seals the fields.
   */
  'workspace'?: (string);
  /**
   * Resource (table or kind) the record belongs to, e.g. "mcpoauthtokens.obot.obot.ai".
   */
  'resource'?: (string);
  /**
   * Stable identifier of the record (primary key).
   */
  'record_id'?: (string);
  /**
   * Field name to plaintext value.
   */
  'fields'?: ({[key: string]: Buffer | Uint8Array | string});
}

/**
 * A record whose fields are plaintext bytes.
 */
export interface PlainRecord__Output {
  /**
   * Tenant whose workspace key seals the fields.
   */
  'workspace': (string);
  /**
   * Resource (table or kind) the record belongs to, e.g. "mcpoauthtokens.obot.obot.ai".
   */
  'resource': (string);
  /**
   * Stable identifier of the record (primary key).
   */
  'record_id': (string);
  /**
   * Field name to plaintext value.
   */
  'fields': ({[key: string]: Buffer});
}
