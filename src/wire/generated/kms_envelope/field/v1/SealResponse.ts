// Original file: proto/kms_envelope/field/v1/field.proto

import type { SealedRecord as _kms_envelope_field_v1_SealedRecord, SealedRecord__Output as _kms_envelope_field_v1_SealedRecord__Output } from '../../../kms_envelope/field/v1/SealedRecord.js';

export interface SealResponse {
  /**
   * Same order and identity as the request's records.
   */
  'records'?: (_kms_envelope_field_v1_SealedRecord)[];
  /**
   * Master-key version that sealed this batch.
   */
  'key_id'?: (string);
}

export interface SealResponse__Output {
  /**
   * Same order and identity as the request's records.
   */
  'records': (_kms_envelope_field_v1_SealedRecord__Output)[];
  /**
   * Master-key version that sealed this batch.
   */
  'key_id': (string);
}
