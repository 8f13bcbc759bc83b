import { createHash } from "node:crypto";
import { Counter, Gauge, type Registry } from "prom-client";

/**
 * The form kube-apiserver gives key ids in its metrics (KMS-CONTRACT.md §7): `sha256:` and the
 * hex SHA-256 of the id's UTF-8 bytes; an empty id stays empty. Same input, same label, so the
 * daemon's and the apiserver's series join on `key_id_hash`.
 */
export function keyIdHash(keyId: string): string {
  if (keyId === "") return "";
  return `sha256:${createHash("sha256").update(keyId, "utf8").digest("hex")}`;
}

/** Which way a value went: kube-apiserver's `transformation_type` label. */
type TransformationType = "to_storage" | "from_storage";

type UseLabels = "transformation_type" | "provider_name" | "key_id_hash";

// kube-apiserver keeps the last 100 label sets of each family and deletes older ones, so a
// plugin that keeps changing key ids cannot grow a scrape without end; the same bound here.
const LABEL_SETS_KEPT = 100;

/** Label sets in use order, oldest first; forgets (and reports) the oldest past the bound. */
class RecentLabelSets<Labels> {
  readonly #sets = new Map<string, Labels>();
  readonly #evict: (labels: Labels) => void;

  constructor(evict: (labels: Labels) => void) {
    this.#evict = evict;
  }

  use(key: string, make: () => Labels): Labels {
    let labels = this.#sets.get(key);
    if (labels === undefined) labels = make();
    else this.#sets.delete(key);
    this.#sets.set(key, labels);
    if (this.#sets.size > LABEL_SETS_KEPT) {
      const [oldestKey, oldest] = this.#sets.entries().next().value as [string, Labels];
      this.#sets.delete(oldestKey);
      this.#evict(oldest);
    }
    return labels;
  }
}

/**
 * kube-apiserver's KMS v2 key-id families, with the same names, types and hashing:
 * `apiserver_envelope_encryption_key_id_hash_total` and
 * `apiserver_envelope_encryption_key_id_hash_last_timestamp_seconds`
 * (transformation_type, provider_name, key_id_hash), and
 * `apiserver_envelope_encryption_key_id_hash_status_last_timestamp_seconds` (provider_name,
 * key_id_hash). kube-apiserver's `apiserver_id_hash` label is left out: neither the daemon nor
 * an application knows an apiserver identity, and Prometheus treats a missing label as the empty
 * value kube-apiserver exports when it has none.
 */
export class KeyIdMetrics {
  readonly #uses: Counter<UseLabels>;
  readonly #lastUse: Gauge<UseLabels>;
  readonly #lastStatus: Gauge<"provider_name" | "key_id_hash">;
  readonly #useSets: RecentLabelSets<Record<UseLabels, string>>;
  readonly #statusSets: RecentLabelSets<Record<"provider_name" | "key_id_hash", string>>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.#uses = new Counter({
      name: "apiserver_envelope_encryption_key_id_hash_total",
      help: "Values encrypted (to_storage) or decrypted (from_storage) under each key id, by provider; key ids hashed as kube-apiserver does (sha256:<hex>).",
      labelNames: ["transformation_type", "provider_name", "key_id_hash"],
      registers,
    });
    this.#lastUse = new Gauge({
      name: "apiserver_envelope_encryption_key_id_hash_last_timestamp_seconds",
      help: "Unix time of the latest encryption or decryption under each key id, by provider; key ids hashed as kube-apiserver does.",
      labelNames: ["transformation_type", "provider_name", "key_id_hash"],
      registers,
    });
    this.#lastStatus = new Gauge({
      name: "apiserver_envelope_encryption_key_id_hash_status_last_timestamp_seconds",
      help: "Unix time at which a Status answer last reported each key id as current, by provider; key ids hashed as kube-apiserver does.",
      labelNames: ["provider_name", "key_id_hash"],
      registers,
    });
    this.#useSets = new RecentLabelSets((labels) => {
      this.#uses.remove(labels);
      this.#lastUse.remove(labels);
    });
    this.#statusSets = new RecentLabelSets((labels) => this.#lastStatus.remove(labels));
  }

  /** Counts one value encrypted (to_storage) or decrypted (from_storage) under `keyId`. */
  recordUse(transformation: TransformationType, provider: string, keyId: string): void {
    const labels = this.#useSets.use(`${transformation}\0${provider}\0${keyId}`, () => ({
      transformation_type: transformation,
      provider_name: provider,
      key_id_hash: keyIdHash(keyId),
    }));
    this.#uses.inc(labels);
    this.#lastUse.set(labels, Date.now() / 1000);
  }

  /** Notes that a Status call reported `keyId` as the current key. */
  recordStatus(provider: string, keyId: string): void {
    const labels = this.#statusSets.use(`${provider}\0${keyId}`, () => ({
      provider_name: provider,
      key_id_hash: keyIdHash(keyId),
    }));
    this.#lastStatus.set(labels, Date.now() / 1000);
  }
}
