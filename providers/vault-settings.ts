import { readFileSync } from "node:fs";
import { z } from "zod";
import { ConfigError, errorMessage } from "../src/errors.js";

/** A secret given directly (environment) or by a file read at each login (rotated by others). */
export type SecretSource = { readonly value: string } | { readonly file: string };

/** How the provider obtains a Vault token. */
type VaultAuthSettings =
  | { readonly method: "token"; readonly token: SecretSource }
  | {
      readonly method: "approle";
      readonly mount: string;
      readonly roleId: SecretSource;
      readonly secretId: SecretSource | undefined;
    }
  | {
      readonly method: "kubernetes";
      readonly mount: string;
      readonly role: string;
      readonly jwtFile: string;
    };

/** Everything the provider reads from its environment, checked once at creation. */
export interface VaultSettings {
  /** PEM of the certificate authorities Vault's certificate chains to; Node's store if unset. */
  readonly ca: string | undefined;
  /** The name Vault's certificate must carry, when it differs from the key reference's host. */
  readonly serverName: string | undefined;
  readonly auth: VaultAuthSettings;
  /** Namespace of the auth method and of token renewal; the key's namespace if unset. */
  readonly authNamespace: string | undefined;
}

/** The environment variables the vault provider reads (Vault's own names where it has one). */
const VAULT_ENVIRONMENT = {
  token: "VAULT_TOKEN",
  caCert: "VAULT_CACERT",
  serverName: "VAULT_TLS_SERVER_NAME",
  auth: "VAULT_AUTH_METHOD",
  tokenFile: "VAULT_TOKEN_FILE",
  authMount: "VAULT_AUTH_MOUNT",
  authNamespace: "VAULT_AUTH_NAMESPACE",
  roleId: "VAULT_ROLE_ID",
  roleIdFile: "VAULT_ROLE_ID_FILE",
  secretId: "VAULT_SECRET_ID",
  secretIdFile: "VAULT_SECRET_ID_FILE",
  role: "VAULT_KUBERNETES_ROLE",
  jwtFile: "VAULT_KUBERNETES_JWT_FILE",
} as const;

const E = VAULT_ENVIRONMENT;
const SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token";
const PATH = /^\w(?:[\w.-]*\w)?(?:\/\w(?:[\w.-]*\w)?)*$/;

// Unset and empty are the same: a Kubernetes manifest often sets a variable to "".
const optional = z
  .string()
  .optional()
  .transform((value) => (value === undefined || value.trim() === "" ? undefined : value.trim()));
const mountPath = optional.refine((value) => value === undefined || PATH.test(value), {
  message: "must be a mount path such as approle or auth-k8s/cluster-a",
});

const schema = z.object({
  [E.auth]: optional.pipe(z.enum(["token", "approle", "kubernetes"]).optional()),
  [E.token]: optional,
  [E.tokenFile]: optional,
  [E.caCert]: optional,
  [E.serverName]: optional,
  [E.authMount]: mountPath,
  [E.authNamespace]: mountPath,
  [E.roleId]: optional,
  [E.roleIdFile]: optional,
  [E.secretId]: optional,
  [E.secretIdFile]: optional,
  [E.role]: optional,
  [E.jwtFile]: optional,
});
type Parsed = z.output<typeof schema>;

// Which variables belong to which method: a credential missing for the chosen method while
// another method's are set most likely means the method was not chosen.
const METHOD_VARIABLES = {
  token: [E.token, E.tokenFile],
  approle: [E.roleId, E.roleIdFile, E.secretId, E.secretIdFile],
  kubernetes: [E.role, E.jwtFile],
} as const;

/**
 * Reads the provider's settings from the environment: TLS trust, the auth method and its
 * credentials. Secrets may be given in a file (re-read at each login, so a rotated secret is
 * picked up) or in a variable; both for one secret is refused as ambiguous.
 */
export function readVaultSettings(environment: NodeJS.ProcessEnv): VaultSettings {
  const result = schema.safeParse(environment);
  if (!result.success) {
    const issue = result.error.issues[0];
    throw new ConfigError(
      String(issue?.path[0] ?? "vault provider environment"),
      issue?.message ?? "is invalid",
      `see the vault provider's environment variables in the README`,
    );
  }
  const parsed = result.data;
  const method = parsed[E.auth] ?? "token";
  const caFile = parsed[E.caCert];
  return Object.freeze({
    ca: caFile === undefined ? undefined : readCa(caFile),
    serverName: parsed[E.serverName],
    auth: Object.freeze(authSettings(method, parsed, otherMethodHint(method, parsed))),
    authNamespace: parsed[E.authNamespace],
  });
}

function otherMethodHint(method: VaultAuthSettings["method"], parsed: Parsed): string {
  for (const [other, variables] of Object.entries(METHOD_VARIABLES)) {
    if (other === method) continue;
    const set = variables.find((variable) => parsed[variable] !== undefined);
    if (set !== undefined) return `; ${set} is set: for ${other} auth, set ${E.auth}=${other}`;
  }
  return "";
}

function authSettings(
  method: VaultAuthSettings["method"],
  parsed: Parsed,
  hint: string,
): VaultAuthSettings {
  switch (method) {
    case "token":
      return {
        method,
        token: secret(
          parsed,
          E.token,
          E.tokenFile,
          "the token (a Vault Agent sink file is best)",
          hint,
        ),
      };
    case "approle":
      return {
        method,
        mount: parsed[E.authMount] ?? "approle",
        roleId: secret(parsed, E.roleId, E.roleIdFile, "the AppRole role_id", hint),
        secretId:
          parsed[E.secretId] === undefined && parsed[E.secretIdFile] === undefined
            ? undefined
            : secret(parsed, E.secretId, E.secretIdFile, "the secret_id", ""),
      };
    case "kubernetes": {
      const role = parsed[E.role];
      if (role === undefined) {
        throw new ConfigError(
          E.role,
          "is not set, and Kubernetes auth needs the Vault role to log in as",
          `set ${E.role} to the role bound to this pod's service account${hint}`,
        );
      }
      return {
        method,
        mount: parsed[E.authMount] ?? "kubernetes",
        role,
        jwtFile: parsed[E.jwtFile] ?? SERVICE_ACCOUNT_TOKEN,
      };
    }
  }
}

function secret(
  parsed: Parsed,
  variable: keyof Parsed,
  fileVariable: keyof Parsed,
  what: string,
  hint: string,
): SecretSource {
  const value = parsed[variable];
  const file = parsed[fileVariable];
  if (value !== undefined && file !== undefined) {
    throw new ConfigError(
      variable,
      `and ${fileVariable} are both set`,
      `give ${what} one way: unset one of them`,
    );
  }
  if (file !== undefined) return { file };
  if (value !== undefined) return { value };
  throw new ConfigError(
    fileVariable,
    `is not set (nor ${variable})`,
    `give ${what} in ${fileVariable}, or in ${variable}${hint}`,
  );
}

function readCa(file: string): string {
  let pem: string;
  try {
    pem = readFileSync(file, "utf8");
  } catch (error) {
    throw new ConfigError(
      E.caCert,
      `cannot read ${file}: ${errorMessage(error)}`,
      "give a readable PEM file of the CA that issued Vault's certificate",
      { cause: error },
    );
  }
  if (!pem.includes("-----BEGIN CERTIFICATE-----")) {
    throw new ConfigError(
      E.caCert,
      `${file} holds no PEM certificate`,
      "give the PEM file of the CA that issued Vault's certificate",
    );
  }
  return pem;
}

/** Reads a secret for one login, trimmed (files usually end in a newline). */
export function readSecret(source: SecretSource): string {
  return "value" in source ? source.value : readFileSync(source.file, "utf8").trim();
}
