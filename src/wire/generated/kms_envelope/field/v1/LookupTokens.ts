// Original file: proto/kms_envelope/field/v1/field.proto


/**
 * The tokens of one value.
 */
export interface LookupTokens {
  /**
   * "kmsl:v1:<key id>:<tag>", one per loaded master-key version: the primary's first, then the
   * older versions that can still decrypt, in the keyring's order.
   */
  'tokens'?: (string)[];
}

/**
 * The tokens of one value.
 */
export interface LookupTokens__Output {
  /**
   * "kmsl:v1:<key id>:<tag>", one per loaded master-key version: the primary's first, then the
   * older versions that can still decrypt, in the keyring's order.
   */
  'tokens': (string)[];
}
