// Original file: proto/kms_envelope/field/v1/field.proto


/**
 * A record whose fields are sealed field values, "kmse:v1:<key id>:<base64>".
 */
export interface SealedRecord {
  'workspace'?: (string);
  'resource'?: (string);
  'record_id'?: (string);
  /**
   * Field name to sealed field value (ASCII text, stored as-is by the application).
   */
  'fields'?: ({[key: string]: string});
}

/**
 * A record whose fields are sealed field values, "kmse:v1:<key id>:<base64>".
 */
export interface SealedRecord__Output {
  'workspace': (string);
  'resource': (string);
  'record_id': (string);
  /**
   * Field name to sealed field value (ASCII text, stored as-is by the application).
   */
  'fields': ({[key: string]: string});
}
