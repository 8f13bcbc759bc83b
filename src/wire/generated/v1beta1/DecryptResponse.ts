// Original file: proto/k8s.io/kms/apis/v1beta1/api.proto


export interface DecryptResponse {
  /**
   * The decrypted data.
   */
  'plain'?: (Buffer | Uint8Array | string);
}

export interface DecryptResponse__Output {
  /**
   * The decrypted data.
   */
  'plain': (Buffer);
}
