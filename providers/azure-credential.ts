import type { TokenCredential } from "@azure/identity";

/**
 * DefaultAzureCredential (managed or workload identity, environment), loaded on the first token
 * request: it pulls in MSAL, which a daemon that never uses Azure (and tests with their own
 * credential) should not pay for at import.
 */
export function defaultCredential(): TokenCredential {
  let credential: Promise<TokenCredential> | undefined;
  return {
    async getToken(scopes, options) {
      credential ??= import("@azure/identity").then(
        (identity) => new identity.DefaultAzureCredential(),
      );
      return (await credential).getToken(scopes, options);
    },
  };
}

/** The credential an error message asks the operator to fix, and how. */
export interface AzureCredentialSource {
  /** What it is, e.g. "the workload identity 0000… (token file /var/run/…)". */
  name: string;
  /** What to check or do about it. */
  fix: string;
}

/**
 * The credential DefaultAzureCredential takes its tokens from, read from the same environment
 * in its order — a service principal, workload identity, then managed identity (an
 * IDENTITY_ENDPOINT of App Service, Container Apps or Arc, else the instance metadata service)
 * — so a refusal names the credential to fix. Names variables, files, endpoints and client ids
 * only, never a secret or token.
 */
export function azureCredentialSource(
  environment: NodeJS.ProcessEnv,
  explicit: boolean,
): AzureCredentialSource {
  const value = (name: string) => {
    const found = environment[name];
    return found === undefined || found === "" ? undefined : found;
  };
  const clientId = value("AZURE_CLIENT_ID");
  if (explicit) {
    return {
      name: "the credential given to the azure provider",
      fix: "make it return valid tokens for https://vault.azure.net",
    };
  }
  if (value("AZURE_CLIENT_SECRET") ?? value("AZURE_CLIENT_CERTIFICATE_PATH")) {
    return {
      name: `the service principal ${clientId ?? "(AZURE_CLIENT_ID unset)"} of AZURE_TENANT_ID`,
      fix: "renew its client secret or certificate in Microsoft Entra ID (they expire) and give the new one to the daemon",
    };
  }
  const tokenFile = value("AZURE_FEDERATED_TOKEN_FILE");
  if (tokenFile !== undefined && clientId !== undefined) {
    return {
      name: `the workload identity ${clientId} (token file ${tokenFile})`,
      fix: "check that its federated credential names this service account and that the projected token is mounted",
    };
  }
  const assigned = clientId === undefined ? "" : ` (user-assigned ${clientId})`;
  const endpoint = value("IDENTITY_ENDPOINT") ?? value("MSI_ENDPOINT");
  if (endpoint !== undefined) {
    return {
      name: `the managed identity${assigned} of ${endpoint}`,
      fix: "check that the identity is still assigned to this resource and has access to the vault",
    };
  }
  return {
    name: `the managed identity${assigned} of the instance metadata service`,
    fix: "check that the identity is still assigned to this VM or node pool and has access to the vault",
  };
}
