/**
 * A KMS error as the service sends it: HTTP status plus `{"__type": code, "message": …}`
 * (CLOUD-PROTOCOLS.md §B.1). Thrown inside the emulator and turned into a response.
 */
export class KmsServiceError extends Error {
  /** The `__type` code the SDK turns into the error's `name`. */
  readonly code: string;
  /** HTTP status of the response. */
  readonly status: number;

  constructor(code: string, status: number, message?: string) {
    super(message ?? "");
    this.name = "KmsServiceError";
    this.code = code;
    this.status = status;
  }

  /** Response body; KMS omits `message` for some errors (InvalidCiphertextException). */
  body(): Record<string, string> {
    return this.message === ""
      ? { __type: this.code }
      : { __type: this.code, message: this.message };
  }
}

/** 400 errors the KMS API documents per operation. */
export const clientError = (code: string, message?: string) =>
  new KmsServiceError(code, 400, message);

/** The request body or a member failed validation. */
export const validationError = (message: string) =>
  new KmsServiceError("ValidationException", 400, `1 validation error detected: ${message}`);
