// Original file: proto/k8s.io/kms/apis/v2/api.proto


export interface StatusResponse {
  /**
   * Version of the KMS plugin API.  Now, this should be "v2" or "v2beta1"
   */
  'version'?: (string);
  /**
   * Any value other than "ok" is failing healthz.  On failure, the associated API server healthz endpoint will contain this value as part of the error message.
   */
  'healthz'?: (string);
  /**
   * the current write key, can be used to trigger rotation and indicate stale data.
   */
  'key_id'?: (string);
}

export interface StatusResponse__Output {
  /**
   * Version of the KMS plugin API.  Now, this should be "v2" or "v2beta1"
   */
  'version': (string);
  /**
   * Any value other than "ok" is failing healthz.  On failure, the associated API server healthz endpoint will contain this value as part of the error message.
   */
  'healthz': (string);
  /**
   * the current write key, can be used to trigger rotation and indicate stale data.
   */
  'key_id': (string);
}
