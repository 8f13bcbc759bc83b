// Original file: proto/k8s.io/kms/apis/v1beta1/api.proto


export interface EncryptRequest {
  /**
   * Version of the KMS plugin API.
   */
  'version'?: (string);
  /**
   * The data to be encrypted.
   */
  'plain'?: (Buffer | Uint8Array | string);
}

export interface EncryptRequest__Output {
  /**
   * Version of the KMS plugin API.
   */
  'version': (string);
  /**
   * The data to be encrypted.
   */
  'plain': (Buffer);
}
