// Original file: proto/k8s.io/kms/apis/v2/api.proto


export interface EncryptRequest {
  /**
   * The data to be encrypted.
   */
  'plaintext'?: (Buffer | Uint8Array | string);
  /**
   * UID is a unique identifier for the request.
   */
  'uid'?: (string);
}

export interface EncryptRequest__Output {
  /**
   * The data to be encrypted.
   */
  'plaintext': (Buffer);
  /**
   * UID is a unique identifier for the request.
   */
  'uid': (string);
}
