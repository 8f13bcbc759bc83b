// Original file: proto/kms_envelope/field/v1/field.proto


export interface LookupRequest {
  /**
   * Tenant whose workspace key the tokens derive from.
   */
  'workspace'?: (string);
  /**
   * Resource and field the values belong to; both are bound into every token.
   */
  'resource'?: (string);
  'field'?: (string);
  /**
   * Applied to each value in this order before its token is computed: "trim", "lowercase",
   * "nfc", each at most once (SPEC.md §2.1). None: the value exactly as sent.
   */
  'normalizers'?: (string)[];
  /**
   * The values as UTF-8 text. bytes rather than string so that invalid UTF-8 is refused, not
   * silently replaced (two different invalid values would otherwise share a token).
   */
  'values'?: (Buffer | Uint8Array | string)[];
  /**
   * Correlation id carried into the daemon's logs.
   */
  'uid'?: (string);
}

export interface LookupRequest__Output {
  /**
   * Tenant whose workspace key the tokens derive from.
   */
  'workspace': (string);
  /**
   * Resource and field the values belong to; both are bound into every token.
   */
  'resource': (string);
  'field': (string);
  /**
   * Applied to each value in this order before its token is computed: "trim", "lowercase",
   * "nfc", each at most once (SPEC.md §2.1). None: the value exactly as sent.
   */
  'normalizers': (string)[];
  /**
   * The values as UTF-8 text. bytes rather than string so that invalid UTF-8 is refused, not
   * silently replaced (two different invalid values would otherwise share a token).
   */
  'values': (Buffer)[];
  /**
   * Correlation id carried into the daemon's logs.
   */
  'uid': (string);
}
