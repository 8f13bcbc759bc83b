// Original file: proto/k8s.io/kms/apis/v1beta1/api.proto


export interface VersionResponse {
  /**
   * Version of the KMS plugin API.
   */
  'version'?: (string);
  /**
   * Name of the KMS provider.
   */
  'runtime_name'?: (string);
  /**
   * Version of the KMS provider. The string must be semver-compatible.
   */
  'runtime_version'?: (string);
}

export interface VersionResponse__Output {
  /**
   * Version of the KMS plugin API.
   */
  'version': (string);
  /**
   * Name of the KMS provider.
   */
  'runtime_name': (string);
  /**
   * Version of the KMS provider. The string must be semver-compatible.
   */
  'runtime_version': (string);
}
