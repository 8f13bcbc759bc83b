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
