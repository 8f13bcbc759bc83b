// Original file: proto/kms_envelope/field/v1/field.proto

import type { LookupTokens as _kms_envelope_field_v1_LookupTokens, LookupTokens__Output as _kms_envelope_field_v1_LookupTokens__Output } from '../../../kms_envelope/field/v1/LookupTokens.js';

export interface LookupResponse {
  /**
   * Same order as the request's values.
   */
  'values'?: (_kms_envelope_field_v1_LookupTokens)[];
  /**
   * Primary master-key version: tokens[0] of every value is under it, the token to store now.
   */
  'key_id'?: (string);
}

export interface LookupResponse__Output {
  /**
   * Same order as the request's values.
   */
  'values': (_kms_envelope_field_v1_LookupTokens__Output)[];
  /**
   * Primary master-key version: tokens[0] of every value is under it, the token to store now.
   */
  'key_id': (string);
}
