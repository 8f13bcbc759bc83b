/**
 * The validated, immutable model of a Kubernetes EncryptionConfiguration
 * (apiserver.config.k8s.io/v1). The loader in encryption-configuration.ts is the only
 * producer; transformers, the field layer and the CLI consume these types.
 */

/**
 * One key of an aesgcm, aescbc or secretbox provider. Holds key material: never log it; the
 * engine keeps (and zeroes on close) its own copy.
 */
export interface AesKeyConfig {
  /** The key's name, written into every value it encrypts (`k8s:enc:aesgcm:v1:<name>:`). */
  readonly name: string;
  /** The decoded key: 16, 24 or 32 bytes for AES, 32 for secretbox. */
  readonly secret: Uint8Array;
}

/**
 * One provider of a `resources[i].providers` list, in the order the file gives them:
 * `identity` (no encryption), a keyed provider with its keys (the first key writes), or a
 * `kms` provider. For `kms`: `endpoint` is as written (`unix:///var/run/x.sock`),
 * `socketPath` the socket it names (a leading NUL byte for an abstract socket), `cacheSize`
 * the v1 DEK cache size (default 1000, negative disables the cache; undefined for v2) and
 * `timeoutMs` the per-call timeout (the file's `timeout`, default 3 s).
 */
export type ProviderConfig =
  | { readonly type: "identity" }
  | { readonly type: "aesgcm" | "aescbc" | "secretbox"; readonly keys: readonly AesKeyConfig[] }
  | {
      readonly type: "kms";
      readonly apiVersion: "v1" | "v2";
      readonly name: string;
      /** As written, e.g. `unix:///var/run/x.sock` */
      readonly endpoint: string;
      /** `/var/run/x.sock`, or a NUL byte then the name for `unix:///@abstract` */
      readonly socketPath: string;
      /** v1 only: default 1000, a negative size disables the DEK cache; undefined for v2 */
      readonly cacheSize: number | undefined;
      readonly timeoutMs: number;
    };

/** One `resources[i]` entry: the providers, in order, for every listed resource. */
export interface ResourceRule {
  /**
   * Group resources as written (`secrets`, `widgets.example.com`), possibly wildcards
   * (`*.apps`, `*.*`).
   */
  readonly resources: readonly string[];
  /** Providers in file order: the first writes, every one may read. Never empty. */
  readonly providers: readonly ProviderConfig[];
}

/**
 * A loaded EncryptionConfiguration: what {@link loadEncryptionConfiguration} returns and
 * {@link EncryptionEngine.start} takes. Frozen.
 */
export interface EncryptionConfiguration {
  /**
   * The `resources` entries, in file order. A resource named by several entries gets all their
   * providers, earlier entries first, as the apiserver appends them to one list.
   */
  readonly rules: readonly ResourceRule[];
  /** sha256 hex of the file bytes, as the apiserver's reload controller compares them. */
  readonly hash: string;
}
