import { randomBytes } from "node:crypto";
import { badRequest } from "./errors.js";

/** A Vault service token as the emulator keeps it. */
export interface TokenEntry {
  readonly id: string;
  readonly accessor: string;
  /** The namespace the token was created in ("" = root). */
  readonly namespace: string;
  policies: string[];
  /** The TTL it was issued with, in seconds (0 = never expires: root tokens). */
  readonly creationTtl: number;
  /** Its max TTL in seconds from issue (explicit, or the system's). */
  readonly maxTtl: number;
  readonly renewable: boolean;
  /** Login path, `auth/token/create` for tokens made directly. */
  readonly path: string;
  readonly issuedAt: number;
  /** Epoch ms when it expires; undefined for a token without TTL. */
  expiresAt: number | undefined;
  revoked: boolean;
}

/** What a new token is made with. */
export interface TokenOptions {
  policies?: string[];
  /** TTL in seconds; 0 = no expiry (allowed only with the root policy, as in Vault). */
  ttlSeconds?: number;
  /** Explicit max TTL in seconds; the system max TTL when absent. */
  explicitMaxTtlSeconds?: number;
  renewable?: boolean;
  namespace?: string;
  path?: string;
}

/**
 * The token store: service tokens with TTLs, renewal capped by the max TTL (with Vault's
 * warning), revocation. Lookups of expired or revoked tokens find nothing, as in Vault.
 */
export class TokenStore {
  readonly #tokens = new Map<string, TokenEntry>();
  readonly #systemMaxTtl: number;

  constructor(systemMaxTtlSeconds: number) {
    this.#systemMaxTtl = systemMaxTtlSeconds;
  }

  create(options: TokenOptions): TokenEntry {
    const policies = [...new Set(["default", ...(options.policies ?? [])])];
    const creationTtl = options.ttlSeconds ?? 3600;
    const maxTtl = options.explicitMaxTtlSeconds ?? this.#systemMaxTtl;
    const issuedAt = Date.now();
    const ttl = Math.min(creationTtl, maxTtl);
    const entry: TokenEntry = {
      id: `hvs.${randomBytes(18).toString("base64url")}`,
      accessor: randomBytes(12).toString("base64url"),
      namespace: options.namespace ?? "",
      policies: options.policies?.includes("root") ? ["root"] : policies,
      creationTtl,
      maxTtl,
      renewable: options.renewable ?? true,
      path: options.path ?? "auth/token/create",
      issuedAt,
      expiresAt: creationTtl === 0 ? undefined : issuedAt + ttl * 1000,
      revoked: false,
    };
    this.#tokens.set(entry.id, entry);
    return entry;
  }

  /** The live token with this id, or undefined (unknown, expired or revoked). */
  find(id: string | undefined): TokenEntry | undefined {
    if (id === undefined) return undefined;
    const entry = this.#tokens.get(id);
    if (entry === undefined || entry.revoked) return undefined;
    if (entry.expiresAt !== undefined && Date.now() >= entry.expiresAt) {
      this.#tokens.delete(id);
      return undefined;
    }
    return entry;
  }

  revoke(id: string): void {
    const entry = this.#tokens.get(id);
    if (entry !== undefined) entry.revoked = true;
  }

  /** Revokes every token issued by one login path (a role's tokens, say). */
  revokeByPath(path: string): void {
    for (const entry of this.#tokens.values()) if (entry.path === path) entry.revoked = true;
  }

  /**
   * auth/token/renew-self: extends the TTL to the increment (or the creation TTL), never past
   * the max TTL, in which case Vault warns that the TTL was capped.
   */
  renew(entry: TokenEntry, incrementSeconds: number): { ttl: number; warnings: string[] } {
    if (!entry.renewable || entry.expiresAt === undefined)
      throw badRequest("lease is not renewable");
    const now = Date.now();
    const wanted = incrementSeconds > 0 ? incrementSeconds : entry.creationTtl;
    const left = Math.floor((entry.issuedAt + entry.maxTtl * 1000 - now) / 1000);
    const ttl = Math.max(0, Math.min(wanted, left));
    entry.expiresAt = now + ttl * 1000;
    const warnings =
      ttl < wanted
        ? [
            `TTL of "${wanted}s" exceeded the effective max_ttl of "${ttl}s"; TTL value is capped accordingly`,
          ]
        : [];
    return { ttl, warnings };
  }

  /** The `data` of auth/token/lookup-self. */
  lookup(entry: TokenEntry): Record<string, unknown> {
    const ttl =
      entry.expiresAt === undefined
        ? 0
        : Math.max(0, Math.floor((entry.expiresAt - Date.now()) / 1000));
    return {
      accessor: entry.accessor,
      creation_time: Math.floor(entry.issuedAt / 1000),
      creation_ttl: entry.creationTtl,
      display_name: "token",
      entity_id: "",
      expire_time: entry.expiresAt === undefined ? null : new Date(entry.expiresAt).toISOString(),
      explicit_max_ttl: entry.maxTtl === this.#systemMaxTtl ? 0 : entry.maxTtl,
      id: entry.id,
      issue_time: new Date(entry.issuedAt).toISOString(),
      meta: null,
      num_uses: 0,
      orphan: true,
      path: entry.path,
      policies: entry.policies,
      renewable: entry.renewable,
      ttl,
      type: "service",
    };
  }

  /** The `auth` object of a login or renewal answer. */
  auth(entry: TokenEntry, ttl: number): Record<string, unknown> {
    return {
      client_token: entry.id,
      accessor: entry.accessor,
      policies: entry.policies,
      token_policies: entry.policies,
      metadata: null,
      lease_duration: ttl,
      renewable: entry.renewable,
      entity_id: "",
      token_type: "service",
      orphan: true,
      mfa_requirement: null,
      num_uses: 0,
    };
  }
}

/** Capabilities Vault knows; `root` grants everything, `deny` wins over everything. */
export type Capability = "create" | "read" | "update" | "delete" | "list" | "sudo" | "deny";

/** One ACL policy: path patterns (exact, `*` suffix glob, `+` one segment) to capabilities. */
export type PolicyRules = Readonly<Record<string, readonly Capability[]>>;

/** Vault's built-in default policy, reduced to what a token needs to look after itself. */
const DEFAULT_POLICY: PolicyRules = {
  "auth/token/lookup-self": ["read"],
  "auth/token/renew-self": ["update"],
  "auth/token/revoke-self": ["update"],
  "sys/capabilities-self": ["update"],
};

/**
 * ACL policies per namespace. For each policy the most specific matching rule applies (an
 * exact path over globs, a longer glob over a shorter one), and the token's capabilities are
 * the union over its policies, with `deny` overriding: a simplification of Vault's rules that
 * agrees with them for the policies tests write.
 */
export class Policies {
  readonly #policies = new Map<string, PolicyRules>();

  write(namespace: string, name: string, rules: PolicyRules): void {
    this.#policies.set(`${namespace}\u0000${name}`, rules);
  }

  delete(namespace: string, name: string): void {
    this.#policies.delete(`${namespace}\u0000${name}`);
  }

  /** What a token of `namespace` with these policies may do on `path` (relative to it). */
  capabilities(namespace: string, policies: readonly string[], path: string): string[] {
    if (policies.includes("root")) return ["root"];
    const granted = new Set<string>();
    for (const name of policies) {
      const rules =
        name === "default" ? DEFAULT_POLICY : this.#policies.get(`${namespace}\u0000${name}`);
      if (rules === undefined) continue;
      for (const capability of bestRule(rules, path) ?? []) granted.add(capability);
    }
    return granted.has("deny") ? ["deny"] : [...granted].sort();
  }
}

function bestRule(rules: PolicyRules, path: string): readonly Capability[] | undefined {
  let best: { score: number; capabilities: readonly Capability[] } | undefined;
  for (const [pattern, capabilities] of Object.entries(rules)) {
    const score = matchScore(pattern, path);
    if (score !== undefined && (best === undefined || score > best.score))
      best = { score, capabilities };
  }
  return best?.capabilities;
}

// Higher is more specific: an exact match beats every glob.
function matchScore(pattern: string, path: string): number | undefined {
  const glob = pattern.endsWith("*");
  const stem = glob ? pattern.slice(0, -1) : pattern;
  const patternParts = stem.split("/");
  const pathParts = path.split("/");
  if (!glob && patternParts.length !== pathParts.length) return undefined;
  for (const [index, part] of patternParts.entries()) {
    const actual = pathParts[index];
    if (actual === undefined) return undefined;
    const last = index === patternParts.length - 1;
    if (part === "+") continue;
    if (glob && last ? !actual.startsWith(part) : actual !== part) return undefined;
  }
  return glob ? stem.length : Number.MAX_SAFE_INTEGER;
}
