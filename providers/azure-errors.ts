import { errorMessage } from "../src/errors.js";
import type { AzureCredentialSource } from "./azure-credential.js";
import type { AzureKeyReference } from "./azure-key-ref.js";
import { ProviderError } from "./types.js";

/** What the classifier knows about a failed call (or one failed attempt) besides the error. */
export interface CallFacts {
  /** The provider operation: wrapKey, unwrapKey or checkHealth. */
  operation: string;
  /** The pinned key version. */
  key: AzureKeyReference;
  /** The wrap algorithm, once known (named when Key Vault refuses a request). */
  algorithm: string | undefined;
  /** The call's deadline. */
  timeoutMs: number;
  /** HTTP attempts made so far. */
  attempts: number;
  /** Status of the last HTTP attempt answered. */
  lastStatus: number | undefined;
  /** The call's deadline fired. */
  timedOut: boolean;
  /** The caller's signal aborted the call. */
  cancelled: boolean;
  /** Where tokens come from, named when they cannot be had or are refused. */
  credentials: AzureCredentialSource;
}

// @azure/identity errors: no Microsoft Entra token could be had, before any request was sent.
const CREDENTIAL_ERRORS = new Set([
  "CredentialUnavailableError",
  "AuthenticationError",
  "AggregateAuthenticationError",
  "AuthenticationRequiredError",
]);

/**
 * Maps a failure of the Key Vault SDK (RestError, credential errors, its client-side refusals)
 * to the provider error classes — user-caused, throttled, corrupt, other — with a message that
 * says what to do: 429 throttled, 5xx and network other, 401/403/404 user, 400 on unwrap corrupt.
 */
export function classifyAzureError(error: unknown, facts: CallFacts): ProviderError {
  if (error instanceof ProviderError) return error;
  const { operation } = facts;
  const keyRef = facts.key.keyRef;
  const where = `${operation} with ${keyRef}`;
  const attempts = `${facts.attempts} attempt${facts.attempts === 1 ? "" : "s"}`;
  const fail = (errorClass: ProviderError["errorClass"], message: string) =>
    new ProviderError(errorClass, message, { cause: error });
  if (facts.timedOut) {
    return facts.lastStatus === 429
      ? fail(
          "throttled",
          `Key Vault kept throttling ${where} for ${facts.timeoutMs} ms (${attempts}): retry later, and look for other clients sharing the vault's limits`,
        )
      : fail(
          "other",
          `Key Vault did not complete ${where} within ${facts.timeoutMs} ms (${attempts}): check network access to ${facts.key.vaultUrl} (firewall, private endpoint, proxy) and the service's health`,
        );
  }
  if (facts.cancelled) return fail("other", `${where} was cancelled by the caller`);
  const { name: errorName, message } = describeError(error);
  const source = facts.credentials;
  if (CREDENTIAL_ERRORS.has(errorName)) {
    return fail(
      "user",
      `no Microsoft Entra token for Key Vault from ${source.name} (${errorName}: ${message}): ${source.fix}; without one, give the daemon a managed or workload identity, or set AZURE_TENANT_ID, AZURE_CLIENT_ID and a secret or certificate`,
    );
  }
  if (errorName === "RestError") {
    const { statusCode: status, code, details } = error as RestErrorShape;
    const said = ` (Key Vault: ${status ?? "no response"} ${code ?? ""}: ${message})`;
    const access = `grant the daemon's identity the Key Vault Crypto Service Encryption User or Key Vault Crypto User role (or the wrapKey and unwrapKey key permissions of an access policy; get is optional) on ${keyRef}, and allow its network in the vault firewall`;
    // An access policy's refusal names the one permission missing.
    const missing = /does not have keys (\w+) permission/.exec(message)?.[1];
    if (status === 401) {
      const expired = /TokenExpired/i.test(message) ? "it expired and was not renewed; " : "";
      return fail(
        "user",
        `Key Vault rejected the token of ${source.name} for ${where}: ${expired}${source.fix}, in the vault's tenant${said}`,
      );
    }
    if (
      status === 403 &&
      (details?.error?.innerError?.code === "KeyDisabled" || /disabled/i.test(message))
    ) {
      return fail(
        "user",
        `key version ${keyRef} is disabled: enable it (\`az keyvault key set-attributes --id ${keyRef} --enabled true\`) or rotate to an enabled version${said}`,
      );
    }
    if (status === 403 && missing !== undefined) {
      return fail(
        "user",
        `access denied for ${where}: the identity's access policy lacks the keys ${missing} permission; add it (\`az keyvault set-policy --name ${vaultName(facts.key.vaultUrl)} --object-id <identity> --key-permissions wrapKey unwrapKey\`) or grant the Key Vault Crypto Service Encryption User role${said}`,
      );
    }
    if (status === 403 && /expired/i.test(message)) {
      return fail(
        "user",
        `key version ${keyRef} has expired, so Key Vault refuses ${operation}: extend it (\`az keyvault key set-attributes --id ${keyRef} --expires …\`) or rotate to a new version${said}`,
      );
    }
    if (status === 403) return fail("user", `access denied for ${where}: ${access}${said}`);
    if (status === 404)
      return fail(
        "user",
        `Key Vault has no key ${keyRef}: it was deleted (recover it with \`az keyvault key recover\`) or keyRef names the wrong vault, key or version${said}`,
      );
    if (status === 429)
      return fail(
        "throttled",
        `Key Vault throttled ${where} (${attempts}): retry later, and look for other clients sharing the vault's limits${said}`,
      );
    if (status === 400 && operation === "unwrapKey" && !/algorithm/i.test(message)) {
      return fail(
        "corrupt",
        `Key Vault could not unwrap the wrapped key with ${keyRef}: it is damaged, or was wrapped under another key or key version${said}`,
      );
    }
    if (status === 400)
      return fail(
        "user",
        `Key Vault refused ${where}: check that ${facts.algorithm ?? "the wrap algorithm"} suits the key${said}`,
      );
    if (status === undefined)
      return fail(
        "other",
        `could not reach Key Vault at ${facts.key.vaultUrl} for ${operation} (${attempts}): ${message}: check DNS, network access, proxy and TLS trust`,
      );
    return fail(
      "other",
      `Key Vault failed ${where} (${attempts}): a service-side or transient failure, retry later${said}`,
    );
  }
  // Client-side refusals of the SDK (CryptographyClient.ensureValid, challenge verification).
  if (/expired at|can't be used before|is not supported on key/.test(message)) {
    return fail(
      "user",
      `the Key Vault SDK refused ${where}: ${message}: check the key version's expiry, not-before and permitted operations`,
    );
  }
  if (/challenge resource/.test(message)) {
    return fail(
      "user",
      `${facts.key.vaultUrl} answered with an authentication challenge for another resource: keyRef must name a Key Vault or Managed HSM URL (${message})`,
    );
  }
  return fail("other", `${where} failed: ${errorName}: ${message}`);
}

// The vault's name is the first label of its host (`<name>.vault.azure.net`).
function vaultName(vaultUrl: string): string {
  return new URL(vaultUrl).hostname.split(".")[0] ?? vaultUrl;
}

interface RestErrorShape {
  statusCode?: number;
  code?: string;
  details?: { error?: { innerError?: { code?: string } } };
}

// One line, bounded: service and SDK messages name keys and codes, never tokens or key bytes.
function describeError(error: unknown): { name: string; message: string } {
  const name = error instanceof Error ? error.name : typeof error;
  const raw = errorMessage(error);
  const line = raw.replace(/\s+/g, " ").trim();
  return { name, message: line.length > 240 ? `${line.slice(0, 240)}…` : line };
}
