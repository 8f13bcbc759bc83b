// Original file: proto/kms_envelope/field/v1/field.proto

import type { PlainRecord as _kms_envelope_field_v1_PlainRecord, PlainRecord__Output as _kms_envelope_field_v1_PlainRecord__Output } from '../../../kms_envelope/field/v1/PlainRecord.js';

export interface SealRequest {
  'records'?: (_kms_envelope_field_v1_PlainRecord)[];
  /**
   * Correlation id carried into the daemon's logs.
   */
  'uid'?: (string);
}

export interface SealRequest__Output {
  'records': (_kms_envelope_field_v1_PlainRecord__Output)[];
  /**
   * Correlation id carried into the daemon's logs.
   */
  'uid': (string);
}
