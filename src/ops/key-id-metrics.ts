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

/**
 * The custody provider of a daemon key id, `<custody provider>:<tag>` (SPEC.md §2): the
 * metrics' provider_name.
 */
export function custodyProviderOf(keyId: string): string {
  return keyId.slice(0, keyId.indexOf(":"));
}

/** Which way a value went: kube-apiserver's `transformation_type` label. */
type TransformationType = "to_storage" | "from_storage";

type UseLabels = "transformation_type" | "provider_name" | "key_id_hash";

// kube-apiserver keeps the last 100 label sets of each family and deletes older ones, so a
// plugin that keeps changing key ids cannot grow a scrape without end; the same bound here.
const LABEL_SETS_KEPT = 100;

/** One label set's figures, kept as plain numbers and published at each scrape. */
interface Tally<Labels> {
  readonly labels: Labels;
  count: number;
  /** Date.now() of the latest use. */
  lastMs: number;
  /** The tallies' clock at the latest use: the least recent set is forgotten first. */
  lastUse: number;
  /** False once forgotten: a use then starts a new tally. */
  kept: boolean;
}

/**
 * Label sets, forgetting the least recently used past the bound. Uses only touch plain
 * numbers: prom-client hashes and validates label sets on every update, which at 10,000+ KMS
 * calls/s cost more than the rest of the metrics together, so the families read these tallies
 * when scraped instead. Recency is a counter rather than Map order, so a use moves nothing.
 */
class RecentTallies<Labels> {
  readonly #tallies = new Map<string, Tally<Labels>>();
  #clock = 0;

  use(key: string, make: () => Labels): Tally<Labels> {
    let tally = this.#tallies.get(key);
    if (tally === undefined) {
      tally = { labels: make(), count: 0, lastMs: 0, lastUse: 0, kept: true };
      this.touch(tally);
      this.#tallies.set(key, tally);
      if (this.#tallies.size > LABEL_SETS_KEPT) this.#forgetLeastRecent();
      return tally;
    }
    this.touch(tally);
    return tally;
  }

  /** Marks a tally as just used. */
  touch(tally: Tally<Labels>): void {
    this.#clock += 1;
    tally.lastUse = this.#clock;
  }

  values(): IterableIterator<Tally<Labels>> {
    return this.#tallies.values();
  }

  // Runs only when a new label set arrives past the bound, so a scan of 100 is fine.
  #forgetLeastRecent(): void {
    let oldestKey: string | undefined;
    let oldestUse = Number.POSITIVE_INFINITY;
    for (const [key, tally] of this.#tallies) {
      if (tally.lastUse < oldestUse) {
        oldestUse = tally.lastUse;
        oldestKey = key;
      }
    }
    if (oldestKey === undefined) return;
    (this.#tallies.get(oldestKey) as Tally<Labels>).kept = false;
    this.#tallies.delete(oldestKey);
  }
}

/** The tally last used for one transformation, found again without building its key. */
interface HotUse {
  /** As given: undefined for a key id of the daemon's own (recordOwnUse). */
  provider: string | undefined;
  keyId: string;
  tally: Tally<Record<UseLabels, string>>;
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
  readonly #uses = new RecentTallies<Record<UseLabels, string>>();
  readonly #statuses = new RecentTallies<Record<"provider_name" | "key_id_hash", string>>();
  readonly #hotUses: Record<TransformationType, HotUse | undefined> = {
    to_storage: undefined,
    from_storage: undefined,
  };

  constructor(registry: Registry) {
    const registers = [registry];
    const uses = this.#uses;
    const statuses = this.#statuses;
    new Counter({
      name: "apiserver_envelope_encryption_key_id_hash_total",
      help: "Values encrypted (to_storage) or decrypted (from_storage) under each key id, by provider; key ids hashed as kube-apiserver does (sha256:<hex>).",
      labelNames: ["transformation_type", "provider_name", "key_id_hash"],
      registers,
      collect() {
        this.reset();
        for (const tally of uses.values()) this.inc(tally.labels, tally.count);
      },
    });
    new Gauge({
      name: "apiserver_envelope_encryption_key_id_hash_last_timestamp_seconds",
      help: "Unix time of the latest encryption or decryption under each key id, by provider; key ids hashed as kube-apiserver does.",
      labelNames: ["transformation_type", "provider_name", "key_id_hash"],
      registers,
      collect() {
        this.reset();
        for (const tally of uses.values()) this.set(tally.labels, tally.lastMs / 1000);
      },
    });
    new Gauge({
      name: "apiserver_envelope_encryption_key_id_hash_status_last_timestamp_seconds",
      help: "Unix time at which a Status answer last reported each key id as current, by provider; key ids hashed as kube-apiserver does.",
      labelNames: ["provider_name", "key_id_hash"],
      registers,
      collect() {
        this.reset();
        for (const tally of statuses.values()) this.set(tally.labels, tally.lastMs / 1000);
      },
    });
  }

  /** Counts one value encrypted (to_storage) or decrypted (from_storage) under `keyId`. */
  recordUse(transformation: TransformationType, provider: string, keyId: string): void {
    this.#use(transformation, provider, keyId);
  }

  /**
   * recordUse() for a key id of the daemon's own, whose custody provider is its prefix: the
   * prefix is cut only when the key id makes a new label set, not on every KMS call.
   */
  recordOwnUse(transformation: TransformationType, keyId: string): void {
    this.#use(transformation, undefined, keyId);
  }

  #use(transformation: TransformationType, provider: string | undefined, keyId: string): void {
    // Nearly every call uses the same key id as the previous one of its kind.
    const hot = this.#hotUses[transformation];
    let tally: Tally<Record<UseLabels, string>>;
    if (hot?.tally.kept && hot.keyId === keyId && hot.provider === provider) {
      tally = hot.tally;
      this.#uses.touch(tally);
    } else {
      const providerName = provider ?? custodyProviderOf(keyId);
      tally = this.#uses.use(`${transformation}\0${providerName}\0${keyId}`, () => ({
        transformation_type: transformation,
        provider_name: providerName,
        key_id_hash: keyIdHash(keyId),
      }));
      this.#hotUses[transformation] = { provider, keyId, tally };
    }
    tally.count += 1;
    tally.lastMs = Date.now();
  }

  /** Notes that a Status call reported `keyId` as the current key. */
  recordStatus(provider: string, keyId: string): void {
    const tally = this.#statuses.use(`${provider}\0${keyId}`, () => ({
      provider_name: provider,
      key_id_hash: keyIdHash(keyId),
    }));
    tally.count += 1;
    tally.lastMs = Date.now();
  }
}
