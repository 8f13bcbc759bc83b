// Original file: proto/k8s.io/kms/apis/v1beta1/api.proto


export interface VersionRequest {
  /**
   * Version of the KMS plugin API.
   */
  'version'?: (string);
}

export interface VersionRequest__Output {
  /**
   * Version of the KMS plugin API.
   */
  'version': (string);
}
