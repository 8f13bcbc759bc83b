// Original file: proto/k8s.io/kms/apis/v2/api.proto


export interface DecryptRequest {
  /**
   * The data to be decrypted.
   */
  'ciphertext'?: (Buffer | Uint8Array | string);
  /**
   * UID is a unique identifier for the request.
   */
  'uid'?: (string);
  /**
   * The keyID that was provided to the apiserver during encryption.
   */
  'key_id'?: (string);
  /**
   * Additional metadata that was sent by the KMS plugin during encryption.
   */
  'annotations'?: ({[key: string]: Buffer | Uint8Array | string});
}

export interface DecryptRequest__Output {
  /**
   * The data to be decrypted.
   */
  'ciphertext': (Buffer);
  /**
   * UID is a unique identifier for the request.
   */
  'uid': (string);
  /**
   * The keyID that was provided to the apiserver during encryption.
   */
  'key_id': (string);
  /**
   * Additional metadata that was sent by the KMS plugin during encryption.
   */
  'annotations': ({[key: string]: Buffer});
}
