/**
 * The validated, immutable model of a Kubernetes EncryptionConfiguration
 * (apiserver.config.k8s.io/v1). The loader in encryption-configuration.ts is the only
 * producer; transformers, the field layer and the CLI consume these types.
 */

/** One key of an aesgcm, aescbc or secretbox provider; `secret` is the decoded key. */
export interface AesKeyConfig {
  readonly name: string;
  readonly secret: Uint8Array;
}

/** One provider of a `resources[i].providers` list, in the order the file gives them. */
export type ProviderConfig =
  | { readonly type: "identity" }
  | { readonly type: "aesgcm" | "aescbc" | "secretbox"; readonly keys: readonly AesKeyConfig[] }
  | {
      readonly type: "kms";
      readonly apiVersion: "v1" | "v2";
      readonly name: string;
      /** As written, e.g. unix:///var/run/x.sock */
      readonly endpoint: string;
      /** `/var/run/x.sock`, or `\0abstract` for `unix:///@abstract` */
      readonly socketPath: string;
      /** v1 only: default 1000, a negative size disables the DEK cache; undefined for v2 */
      readonly cacheSize: number | undefined;
      readonly timeoutMs: number;
    };

/** One `resources[i]` entry: the providers, in order, for every listed resource. */
export interface ResourceRule {
  readonly resources: readonly string[];
  readonly providers: readonly ProviderConfig[];
}

/** A loaded EncryptionConfiguration: what loadEncryptionConfiguration returns and engines start from. */
export interface EncryptionConfiguration {
  /** The `resources` entries, in file order (the first rule naming a resource wins). */
  readonly rules: readonly ResourceRule[];
  /** sha256 hex of the file bytes, as the apiserver's reload controller compares */
  readonly hash: string;
}
