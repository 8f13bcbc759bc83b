import { ProviderError, type ProviderErrorClass } from "./types.js";
import { type VaultReply, vaultErrors } from "./vault-http.js";
import type { VaultKeyReference } from "./vault-key-ref.js";

/** The Transit operations the provider calls. */
export type TransitOperation = "encrypt" | "decrypt";

/** What the messages name: the key and where Vault was reached. */
export interface KeyFacts {
  readonly key: VaultKeyReference;
  /** The address requests go to (the key reference's, or the endpoint override). */
  readonly address: string;
}

/** `transit/encrypt/kek`: the policy path an operation needs `update` on. */
export function policyPath(key: VaultKeyReference, operation: TransitOperation): string {
  return `${key.mount}/${operation}/${key.keyName}`;
}

/** The two policy stanzas the provider needs, as an operator pastes them into a policy. */
function requiredPolicy(key: VaultKeyReference): string {
  return (["encrypt", "decrypt"] as const)
    .map((operation) => `path "${policyPath(key, operation)}" { capabilities = ["update"] }`)
    .join(" and ");
}

function inNamespace(key: VaultKeyReference): string {
  return key.namespace === "" ? "" : ` in namespace ${key.namespace}`;
}

function said(reply: VaultReply): string {
  const errors = vaultErrors(reply.body);
  return ` (HTTP ${reply.status}${errors.length > 0 ? `: ${errors.join("; ")}` : ""})`;
}

/** `vault:v3:…` → 3; undefined when the ciphertext names no version. */
function ciphertextVersion(ciphertext: string): number | undefined {
  const match = /^vault:v(\d+):/.exec(ciphertext);
  return match === null ? undefined : Number(match[1]);
}

/**
 * Classifies a Transit answer that is neither a success nor a 403 (permission problems are
 * diagnosed separately): 400s name the key problem an operator must fix or the damaged input,
 * 429 is throttling, 5xx and sealed are outages.
 */
export function transitFailure(
  operation: TransitOperation,
  reply: VaultReply,
  facts: KeyFacts,
  ciphertext?: string,
): ProviderError {
  const { key } = facts;
  const where = `Vault Transit ${operation} with ${key.keyRef}`;
  const text = vaultErrors(reply.body).join("; ");
  const fail = (errorClass: ProviderErrorClass, message: string) =>
    new ProviderError(errorClass, `${message}${said(reply)}`);
  const keyPath = `${key.mount}/keys/${key.keyName}`;
  if (reply.status === 400) {
    if (/encryption key not found/.test(text)) {
      return fail(
        "user",
        `Transit key ${key.keyName} does not exist in mount ${key.mount}${inNamespace(key)}: create it (vault write -f ${keyPath}) or fix the key reference; a deleted key's wrapped keys come back only with a restore of the key`,
      );
    }
    if (/too old/.test(text)) {
      const version = ciphertext === undefined ? undefined : ciphertextVersion(ciphertext);
      return fail(
        "user",
        `the wrapped key was made with version ${version ?? "?"} of Transit key ${key.keyName}, which is below its min_decryption_version: lower it (vault write ${keyPath}/config min_decryption_version=${version ?? "<version>"}) until kms-envelope rotate and retire have replaced that keyring version`,
      );
    }
    if (/soft-deleted/.test(text)) {
      return fail(
        "user",
        `Transit key ${key.keyName} is soft-deleted: restore it (vault write -f ${keyPath}/soft-delete-restore)`,
      );
    }
    if (/non-AEAD|not supported for key type|associated_data/.test(text)) {
      return fail(
        "user",
        `Transit key ${key.keyName} cannot bind associated data to what it encrypts: use an AEAD key type (aes256-gcm96, the default, aes128-gcm96, chacha20-poly1305 or xchacha20-poly1305)`,
      );
    }
    if (
      operation === "decrypt" &&
      /authentication failed|invalid ciphertext|unable to decrypt|base64/.test(text)
    ) {
      return fail(
        "corrupt",
        `Vault could not decrypt the wrapped key with ${key.keyRef}: it is damaged, bound to another key id, or was made under another Transit key; restore the keyring entry from a backup`,
      );
    }
    return fail("user", `Vault refused ${where}`);
  }
  if (reply.status === 404 || reply.status === 405) {
    return fail(
      "user",
      `Vault has no Transit ${operation} endpoint at ${policyPath(key, operation)}${inNamespace(key)}: check the key reference's mount and namespace (is the Transit engine enabled at ${key.mount}?)`,
    );
  }
  if (reply.status === 429) {
    return fail(
      "throttled",
      `Vault rate-limited ${where}: raise the rate limit quota that applies, or look for other clients sharing it`,
    );
  }
  if (reply.status === 503 && /sealed/i.test(text)) {
    return fail(
      "other",
      `Vault at ${facts.address} is sealed: unseal it (vault operator unseal) or check its auto-unseal; the call is retried at the next check`,
    );
  }
  if (reply.status >= 300 && reply.status < 400) {
    return fail(
      "user",
      `Vault at ${facts.address} redirected ${operation} elsewhere, which is not followed (it would carry the token): point the key reference at the active node or at the cluster's load balancer`,
    );
  }
  return fail(
    "other",
    `${where} failed on the Vault side: a transient or server fault, retried at the next call`,
  );
}

/**
 * A login or token call Vault could not serve now (throttled, sealed, a server fault), for
 * answers that are neither a success nor a refusal of the credentials.
 */
export function serviceFailure(what: string, reply: VaultReply, address: string): ProviderError {
  if (reply.status === 429) {
    return new ProviderError(
      "throttled",
      `Vault rate-limited ${what}: raise the rate limit quota that applies, or look for other clients sharing it${said(reply)}`,
    );
  }
  if (reply.status === 503 && /sealed/i.test(vaultErrors(reply.body).join(" "))) {
    return new ProviderError(
      "other",
      `Vault at ${address} is sealed, so ${what} failed: unseal it (vault operator unseal) or check its auto-unseal; it is retried at the next call${said(reply)}`,
    );
  }
  return new ProviderError(
    "other",
    `${what} failed on the Vault side: a transient or server fault, retried at the next call${said(reply)}`,
  );
}

/** The answer's status names a failure worth another attempt within the call's deadline. */
export function isRetryable(status: number): boolean {
  return status === 412 || status === 429 || status >= 500;
}

const TLS_TRUST = new Set([
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "CERT_UNTRUSTED",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "ERR_TLS_CERT_ALTNAME_INVALID",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
]);

/**
 * A request that got no HTTP answer: an untrusted certificate is the operator's to fix
 * (`user`: restarting will not help); refused connections, DNS and resets are outages.
 */
export function networkFailure(error: unknown, what: string, address: string): ProviderError {
  const code = (error as { code?: unknown } | undefined)?.code;
  const message = error instanceof Error ? error.message.replace(/\s+/g, " ").slice(0, 200) : "";
  if (typeof code === "string" && TLS_TRUST.has(code)) {
    return new ProviderError(
      "user",
      `the TLS certificate of Vault at ${address} is not trusted for ${what} (${code}: ${message}): set VAULT_CACERT to the CA file that issued it${code === "ERR_TLS_CERT_ALTNAME_INVALID" ? ", or VAULT_TLS_SERVER_NAME to a name the certificate carries" : ""}`,
      { cause: error },
    );
  }
  return new ProviderError(
    "other",
    `cannot reach Vault at ${address} for ${what} (${typeof code === "string" ? `${code}: ` : ""}${message}): check the address, DNS, network policies and that Vault is running`,
    { cause: error },
  );
}

/**
 * A 403 from a token Vault still accepts: the policy is missing (or denies) what the operation
 * needs. With the token's capabilities on the path (`sys/capabilities-self`) the message says
 * exactly what to add; an encrypt denied although `update` is granted means the key does not
 * exist (Vault asks `create` for an encrypt that would create it).
 */
export function deniedFailure(
  operation: TransitOperation,
  facts: KeyFacts,
  capabilities: readonly string[] | undefined,
): ProviderError {
  const { key } = facts;
  const path = policyPath(key, operation);
  const policy = requiredPolicy(key);
  let message: string;
  if (capabilities === undefined) {
    message = `Vault denied ${operation} on ${path}${inNamespace(key)} to the Vault token (permission denied): its policies need ${policy}`;
  } else if (capabilities.includes("deny")) {
    message = `a policy of the Vault token denies ${path}${inNamespace(key)} explicitly: remove that deny rule; the provider needs ${policy}`;
  } else if (!capabilities.includes("update") && !capabilities.includes("root")) {
    message = `the Vault token lacks the update capability on ${path}${inNamespace(key)} (it has ${capabilities.length === 0 ? "none" : capabilities.join(", ")}): add ${policy} to its policy`;
  } else if (operation === "encrypt") {
    message = `Transit key ${key.keyName} does not exist in mount ${key.mount}${inNamespace(key)} (Vault asks create, not update, to encrypt with a missing key): create it (vault write -f ${key.mount}/keys/${key.keyName}) or fix the key reference`;
  } else {
    message = `Vault denied ${operation} on ${path}${inNamespace(key)} although the token has update there: check the token's bound CIDRs, Sentinel or control-group rules`;
  }
  return new ProviderError("user", message);
}
