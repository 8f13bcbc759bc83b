// Original file: proto/k8s.io/kms/apis/v2/api.proto


export interface EncryptResponse {
  /**
   * The encrypted data.
   */
  'ciphertext'?: (Buffer | Uint8Array | string);
  /**
   * The KMS key ID used to encrypt the data.
   */
  'key_id'?: (string);
  /**
   * Additional metadata to be stored with the encrypted data.
   */
  'annotations'?: ({[key: string]: Buffer | Uint8Array | string});
}

export interface EncryptResponse__Output {
  /**
   * The encrypted data.
   */
  'ciphertext': (Buffer);
  /**
   * The KMS key ID used to encrypt the data.
   */
  'key_id': (string);
  /**
   * Additional metadata to be stored with the encrypted data.
   */
  'annotations': ({[key: string]: Buffer});
}
