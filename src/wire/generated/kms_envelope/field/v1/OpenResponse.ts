// Original file: proto/kms_envelope/field/v1/field.proto

import type { PlainRecord as _kms_envelope_field_v1_PlainRecord, PlainRecord__Output as _kms_envelope_field_v1_PlainRecord__Output } from '../../../kms_envelope/field/v1/PlainRecord.js';

export interface OpenResponse {
  /**
   * Same order and identity as the request's records.
   */
  'records'?: (_kms_envelope_field_v1_PlainRecord)[];
  /**
   * True when some value was sealed under a key version other than the current primary, so
   * the application knows the record should be re-sealed (rewrap).
   */
  'stale'?: (boolean);
  /**
   * Primary master-key version of the daemon that answered: what a re-seal would use now.
   */
  'key_id'?: (string);
}

export interface OpenResponse__Output {
  /**
   * Same order and identity as the request's records.
   */
  'records': (_kms_envelope_field_v1_PlainRecord__Output)[];
  /**
   * True when some value was sealed under a key version other than the current primary, so
   * the application knows the record should be re-sealed (rewrap).
   */
  'stale': (boolean);
  /**
   * Primary master-key version of the daemon that answered: what a re-seal would use now.
   */
  'key_id': (string);
}
