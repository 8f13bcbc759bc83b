// Original file: proto/k8s.io/kms/apis/v1beta1/api.proto


export interface EncryptResponse {
  /**
   * The encrypted data.
   */
  'cipher'?: (Buffer | Uint8Array | string);
}

export interface EncryptResponse__Output {
  /**
   * The encrypted data.
   */
  'cipher': (Buffer);
}
