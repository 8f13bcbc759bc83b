// Original file: proto/k8s.io/kms/apis/v2/api.proto


export interface DecryptResponse {
  /**
   * The decrypted data.
   */
  'plaintext'?: (Buffer | Uint8Array | string);
}

export interface DecryptResponse__Output {
  /**
   * The decrypted data.
   */
  'plaintext': (Buffer);
}
