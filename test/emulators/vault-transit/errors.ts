/**
 * A failed Vault request as Vault answers it: a status and `{"errors": [...]}` (every status
 * from 400 up carries that body, per Vault's HTTP API documentation).
 */
export class VaultError extends Error {
  readonly status: number;
  readonly errors: string[];
  readonly headers: Record<string, string>;

  constructor(status: number, errors: string[], headers: Record<string, string> = {}) {
    super(errors.join("; "));
    this.status = status;
    this.errors = errors;
    this.headers = headers;
  }
}

/** 400 with one message: what Vault's logical.ErrorResponse + ErrInvalidRequest produce. */
export function badRequest(message: string): VaultError {
  return new VaultError(400, [message]);
}

/**
 * 403 for a token Vault does not know (expired, revoked, mistyped): Vault 1.16+ joins
 * "permission denied" and "invalid token" in one multierror string; OpenBao and older Vault say
 * only "permission denied".
 */
export function invalidToken(flavor: "vault" | "openbao"): VaultError {
  return new VaultError(403, [
    flavor === "vault"
      ? "2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n"
      : "permission denied",
  ]);
}

/** 403 for a valid token whose policies do not grant the capability the request needs. */
export function permissionDenied(): VaultError {
  return new VaultError(403, ["1 error occurred:\n\t* permission denied\n\n"]);
}

/** 404 for a path no mount answers. */
export function noHandler(path: string): VaultError {
  return new VaultError(404, [`no handler for route "${path}". route entry not found.`]);
}

/**
 * Go's base64.StdEncoding.DecodeString as Vault uses it: padding required, any other
 * character refused, but non-zero trailing bits accepted (Go does not check them).
 */
export function decodeBase64(text: string): Buffer {
  const invalid = text.search(/[^A-Za-z0-9+/=]/);
  const padding = text.indexOf("=");
  const badPadding =
    padding >= 0 && (!/^=+$/.test(text.slice(padding)) || text.length - padding > 2);
  if (invalid >= 0 || text.length % 4 !== 0 || badPadding) {
    const at = invalid >= 0 ? invalid : padding >= 0 ? padding : text.length - (text.length % 4);
    throw badRequest(`illegal base64 data at input byte ${at}`);
  }
  return Buffer.from(text, "base64");
}
