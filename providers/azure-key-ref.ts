import { ConfigError } from "../src/errors.js";

/** A parsed, canonical versioned key URL. */
export interface AzureKeyReference {
  readonly vaultUrl: string;
  readonly keyName: string;
  readonly version: string;
  /** `<vault origin>/keys/<name>/<version>`. */
  readonly keyRef: string;
}

const KEY_NAME = /^[0-9a-zA-Z-]{1,127}$/;
const KEY_VERSION = /^[0-9a-zA-Z]{1,64}$/;

/** Parses a versioned Key Vault / Managed HSM key URL; rejects anything else with what to do. */
export function parseAzureKeyRef(keyRef: string): AzureKeyReference {
  const example = "https://<vault>.vault.azure.net/keys/<name>/<version>";
  const refuse = (problem: string) =>
    new ConfigError(
      "azure keyRef",
      `${JSON.stringify(keyRef.slice(0, 200))} ${problem}`,
      `give a versioned key URL such as ${example}`,
    );
  let url: URL;
  try {
    url = new URL(keyRef);
  } catch {
    throw refuse("is not a URL");
  }
  if (url.protocol !== "https:") throw refuse("must use https");
  if (url.username !== "" || url.password !== "" || url.search !== "" || url.hash !== "") {
    throw refuse("must not carry credentials, a query or a fragment");
  }
  const segments = url.pathname.replace(/\/$/, "").split("/");
  if (segments[1] !== "keys" || segments.length < 3 || segments.length > 4) {
    throw refuse("is not a key URL");
  }
  const [, , keyName = "", version = ""] = segments;
  if (!KEY_NAME.test(keyName)) throw refuse("has an invalid key name");
  if (version === "") {
    throw refuse(
      "has no key version: the provider pins one version, as Azure's KMS plugin does (find it with `az keyvault key show --vault-name <vault> --name <name> --query key.kid`)",
    );
  }
  if (!KEY_VERSION.test(version)) throw refuse("has an invalid key version");
  return {
    vaultUrl: url.origin,
    keyName,
    version,
    keyRef: `${url.origin}/keys/${keyName}/${version}`,
  };
}

/**
 * Whether a `kid` Key Vault reports names the pinned key version: host names are
 * case-insensitive and so are key names; versions are hex.
 */
export function isSameAzureKey(kid: string, key: AzureKeyReference): boolean {
  try {
    return parseAzureKeyRef(kid).keyRef.toLowerCase() === key.keyRef.toLowerCase();
  } catch {
    return false;
  }
}
