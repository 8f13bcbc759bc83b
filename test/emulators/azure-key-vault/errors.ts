/**
 * A Key Vault error as the service sends it: an HTTP status and
 * `{"error": {"code", "message", "innererror"?: {"code"}}}` (CLOUD-PROTOCOLS.md §B.2).
 * Thrown inside the emulator and turned into a response.
 */
export class VaultError extends Error {
  /** HTTP status of the response. */
  readonly status: number;
  /** The `error.code` member ("KeyNotFound", "Forbidden", "BadParameter", …). */
  readonly code: string;
  /** The `error.innererror.code` member, when the service sends one ("KeyDisabled", …). */
  readonly innerCode: string | undefined;
  /** Extra response headers (Retry-After, WWW-Authenticate). */
  readonly headers: Record<string, string>;

  constructor(
    status: number,
    code: string,
    message: string,
    options: { innerCode?: string; headers?: Record<string, string> } = {},
  ) {
    super(message);
    this.name = "VaultError";
    this.status = status;
    this.code = code;
    this.innerCode = options.innerCode;
    this.headers = options.headers ?? {};
  }

  /** The JSON response body. */
  body(): { error: Record<string, unknown> } {
    return {
      error: {
        code: this.code,
        message: this.message,
        ...(this.innerCode !== undefined && { innererror: { code: this.innerCode } }),
      },
    };
  }
}

/** 400 BadParameter: the service's answer to malformed input and undecryptable ciphertext. */
export const badParameter = (message: string) => new VaultError(400, "BadParameter", message);

// Wording of the real service (seen in SDK issues): a missing key or version, and a private-key
// operation on a disabled key (403 with innererror KeyDisabled; see azure-sdk-for-python#45342).
/** 404 KeyNotFound for a key name or `name/version`. */
export const keyNotFound = (id: string) =>
  new VaultError(
    404,
    "KeyNotFound",
    `A key with (name/id) ${id} was not found in this key vault. If you recently deleted this key you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182`,
  );

/** 403 Forbidden / KeyDisabled for an operation on a disabled key version. */
export const keyDisabled = (operation: string) =>
  new VaultError(403, "Forbidden", `Operation ${operation} is not allowed on a disabled key.`, {
    innerCode: "KeyDisabled",
  });

/** Who the emulator says a refused caller is: the token's application and object ids, its tenant. */
export interface CallerIdentity {
  appId: string;
  objectId: string;
  tenantId: string;
}

/**
 * 403 Forbidden / AccessDenied: the caller's access policy lacks the key permission, worded as
 * the service words it (seen verbatim in SDK and Terraform issue reports) — the principal, the
 * missing permission and the vault with its location, then the help link.
 */
export const missingKeyPermission = (
  caller: CallerIdentity,
  permission: string,
  vaultName: string,
  location: string,
) =>
  new VaultError(
    403,
    "Forbidden",
    `The user, group or application 'appid=${caller.appId};oid=${caller.objectId};iss=https://sts.windows.net/${caller.tenantId}/' does not have keys ${permission} permission on key vault '${vaultName};location=${location}'. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125287`,
    { innerCode: "AccessDenied" },
  );
