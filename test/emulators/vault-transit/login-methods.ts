import { createHmac, randomBytes, randomUUID, timingSafeEqual } from "node:crypto";
import { badRequest, VaultError } from "./errors.js";
import type { TokenOptions } from "./tokens.js";

/** Token settings a role hands to the tokens its logins get. */
export interface RoleTokenSettings {
  policies: string[];
  /** token_ttl in seconds. */
  tokenTtlSeconds?: number;
  /** token_max_ttl in seconds (an explicit max TTL on each token). */
  tokenMaxTtlSeconds?: number;
}

interface AppRole extends RoleTokenSettings {
  readonly name: string;
  readonly roleId: string;
  readonly secretIds: Set<string>;
}

/**
 * AppRole (auth/<mount>/login with role_id and secret_id): roles with their role_id and
 * issued secret_ids; a wrong pair is Vault's 400 "invalid role or secret ID".
 */
export class AppRoleMethod {
  readonly #roles = new Map<string, AppRole>();

  createRole(name: string, settings: RoleTokenSettings): { roleId: string; secretId: string } {
    const role: AppRole = { ...settings, name, roleId: randomUUID(), secretIds: new Set() };
    this.#roles.set(name, role);
    return { roleId: role.roleId, secretId: this.issueSecretId(name) };
  }

  /** auth/<mount>/role/<name>/secret-id: a new secret_id for the role. */
  issueSecretId(name: string): string {
    const role = this.#roles.get(name);
    if (role === undefined) throw new Error(`no AppRole role ${name}`);
    const secretId = randomUUID();
    role.secretIds.add(secretId);
    return secretId;
  }

  /** Destroys a secret_id: later logins with it fail. */
  destroySecretId(name: string, secretId: string): void {
    this.#roles.get(name)?.secretIds.delete(secretId);
  }

  /** The token options of a successful login, or Vault's error. */
  login(body: Record<string, unknown>, mountPath: string): TokenOptions {
    const roleId = typeof body.role_id === "string" ? body.role_id.trim() : "";
    if (roleId === "") throw badRequest("missing role_id");
    const role = [...this.#roles.values()].find((candidate) => candidate.roleId === roleId);
    if (role === undefined) throw badRequest("invalid role or secret ID");
    const secretId = typeof body.secret_id === "string" ? body.secret_id.trim() : "";
    if (secretId === "") throw badRequest("missing secret_id");
    if (!role.secretIds.has(secretId)) throw badRequest("invalid role or secret ID");
    return tokenOptions(role, `${mountPath}/login`);
  }
}

interface KubernetesRole extends RoleTokenSettings {
  readonly serviceAccounts: string[];
  readonly serviceAccountNamespaces: string[];
}

/**
 * Kubernetes auth (auth/<mount>/login with role and jwt). The emulator stands in for the
 * TokenReview Vault would send to the cluster: it issues service-account JWTs itself (HS256
 * under its own secret) and accepts only those, unexpired, bound to the role's service account
 * names and namespaces.
 */
export class KubernetesMethod {
  readonly #roles = new Map<string, KubernetesRole>();
  readonly #secret = randomBytes(32);

  createRole(
    name: string,
    settings: RoleTokenSettings & { serviceAccount: string; serviceAccountNamespace: string },
  ): void {
    this.#roles.set(name, {
      ...settings,
      serviceAccounts: [settings.serviceAccount],
      serviceAccountNamespaces: [settings.serviceAccountNamespace],
    });
  }

  /** A service-account token as the kubelet projects one (claims Vault's method reads). */
  serviceAccountToken(serviceAccount: string, namespace: string, lifetimeSeconds = 3600): string {
    const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString("base64url");
    const now = Math.floor(Date.now() / 1000);
    const unsigned = `${encode({ alg: "HS256", typ: "JWT" })}.${encode({
      iss: "kubernetes/serviceaccount",
      sub: `system:serviceaccount:${namespace}:${serviceAccount}`,
      "kubernetes.io/serviceaccount/namespace": namespace,
      "kubernetes.io/serviceaccount/service-account.name": serviceAccount,
      iat: now,
      exp: now + lifetimeSeconds,
    })}`;
    return `${unsigned}.${createHmac("sha256", this.#secret).update(unsigned).digest("base64url")}`;
  }

  login(body: Record<string, unknown>, mountPath: string): TokenOptions {
    const name = typeof body.role === "string" ? body.role : "";
    if (name === "") throw badRequest("missing role");
    const role = this.#roles.get(name);
    if (role === undefined) throw badRequest(`invalid role name "${name}"`);
    const jwt = typeof body.jwt === "string" ? body.jwt : "";
    if (jwt === "") throw badRequest("missing jwt");
    const claims = this.#verify(jwt);
    if (claims === undefined) throw new VaultError(403, ["permission denied"]);
    const account = claims["kubernetes.io/serviceaccount/service-account.name"];
    const namespace = claims["kubernetes.io/serviceaccount/namespace"];
    if (!role.serviceAccounts.includes(String(account)))
      throw new VaultError(403, ["service account name not authorized"]);
    if (!role.serviceAccountNamespaces.includes(String(namespace)))
      throw new VaultError(403, ["namespace not authorized"]);
    return tokenOptions(role, `${mountPath}/login`);
  }

  #verify(jwt: string): Record<string, unknown> | undefined {
    const [header, payload, signature] = jwt.split(".");
    if (header === undefined || payload === undefined || signature === undefined) return undefined;
    const expected = createHmac("sha256", this.#secret).update(`${header}.${payload}`).digest();
    const given = Buffer.from(signature, "base64url");
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
    const claims = JSON.parse(Buffer.from(payload, "base64url").toString("utf8")) as Record<
      string,
      unknown
    >;
    return Number(claims.exp) * 1000 > Date.now() ? claims : undefined;
  }
}

function tokenOptions(role: RoleTokenSettings, path: string): TokenOptions {
  return {
    policies: role.policies,
    ttlSeconds: role.tokenTtlSeconds ?? 3600,
    ...(role.tokenMaxTtlSeconds !== undefined && {
      explicitMaxTtlSeconds: role.tokenMaxTtlSeconds,
    }),
    renewable: true,
    path,
  };
}
