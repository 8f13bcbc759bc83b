// Original file: proto/k8s.io/kms/apis/v1beta1/api.proto


export interface DecryptRequest {
  /**
   * Version of the KMS plugin API.
   */
  'version'?: (string);
  /**
   * The data to be decrypted.
   */
  'cipher'?: (Buffer | Uint8Array | string);
}

export interface DecryptRequest__Output {
  /**
   * Version of the KMS plugin API.
   */
  'version': (string);
  /**
   * The data to be decrypted.
   */
  'cipher': (Buffer);
}
