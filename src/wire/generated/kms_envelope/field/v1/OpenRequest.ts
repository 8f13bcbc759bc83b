// Original file: proto/kms_envelope/field/v1/field.proto

import type { SealedRecord as _kms_envelope_field_v1_SealedRecord, SealedRecord__Output as _kms_envelope_field_v1_SealedRecord__Output } from '../../../kms_envelope/field/v1/SealedRecord.js';

export interface OpenRequest {
  'records'?: (_kms_envelope_field_v1_SealedRecord)[];
  'uid'?: (string);
}

export interface OpenRequest__Output {
  'records': (_kms_envelope_field_v1_SealedRecord__Output)[];
  'uid': (string);
}
