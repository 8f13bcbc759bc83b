import { KMS_V1_CONTEXT, KMS_V2_CONTEXT } from "../crypto/contexts.js";
import { decodeKmsCiphertext, kmsCiphertextFor } from "../crypto/kms-ciphertext.js";
import { open, SEALED_MIN_BYTES, seal, sealInto } from "../crypto/sealed.js";
import { KmsEnvelopeError } from "../errors.js";
import type { HealthMonitor } from "./health-monitor.js";
import type { MasterKeySet } from "./master-key-set.js";

/** Which Kubernetes KMS API a ciphertext belongs to; each has its own context (SPEC.md §2). */
export type KmsApi = "v2" | "v1";

const PROBE = Buffer.from("kms-envelope self-test");

/**
 * The daemon's KMS cryptographic service: seals and opens KMS ciphertexts under the
 * master-key set, refusing to work once custody health has been lost for longer than the
 * grace period. The gRPC layer calls this and never touches key bytes itself; field records
 * are sealed in worker threads (keys/field-sealing.ts) after `requireUsable()` here.
 */
export class SealingService {
  #keys: MasterKeySet;
  readonly #kmsWorkspace: string;
  readonly #health: HealthMonitor;

  constructor(options: { keys: MasterKeySet; kmsWorkspace: string; health: HealthMonitor }) {
    this.#keys = options.keys;
    this.#kmsWorkspace = options.kmsWorkspace;
    this.#health = options.health;
  }

  /**
   * Swaps in a new key set (a reloaded keyring) and returns the previous one for disposal.
   * Every operation here is synchronous, so no call is ever halfway through the old set.
   * Field-service workers hold copies of their own (FieldWorkerPool.replaceKeys).
   */
  replaceKeys(keys: MasterKeySet): MasterKeySet {
    const previous = this.#keys;
    this.#keys = keys;
    return previous;
  }

  /** Key id of the primary master-key version: what Status and Encrypt report. */
  get primaryKeyId(): string {
    return this.#keys.primary.keyId;
  }

  /** Key ids of every version this daemon can decrypt, primary first. */
  get keyIds(): string[] {
    return this.#keys.keyIds;
  }

  /** Seals a KMS plaintext (the apiserver's DEK seed) under the primary key. */
  encryptKms(api: KmsApi, plaintext: Uint8Array): { ciphertext: Uint8Array; keyId: string } {
    this.requireUsable();
    const primary = this.#keys.primary;
    const { ciphertext, sealedAt } = kmsCiphertextFor(
      primary.keyId,
      SEALED_MIN_BYTES + plaintext.length,
    );
    const workspaceKey = primary.workspaceKey(this.#kmsWorkspace);
    sealInto(ciphertext, workspaceKey, kmsContext(api), plaintext, undefined, sealedAt);
    return { ciphertext, keyId: primary.keyId };
  }

  /**
   * Opens a KMS ciphertext. `expectedKeyId` is the key_id the v2 caller says it got from
   * Encrypt; it must equal the one inside the ciphertext, or the request is refused.
   */
  decryptKms(api: KmsApi, ciphertext: Uint8Array, expectedKeyId?: string): Uint8Array {
    const { keyId, sealed } = decodeKmsCiphertext(ciphertext);
    if (expectedKeyId !== undefined && expectedKeyId !== keyId) {
      throw new KmsEnvelopeError(
        "KEY_ID_MISMATCH",
        "key_id does not match the key id inside the ciphertext: send the key_id Encrypt returned",
      );
    }
    const version = this.#keys.version(keyId);
    this.requireUsable();
    return open(version.workspaceKey(this.#kmsWorkspace), kmsContext(api), sealed);
  }

  /** Zeroes the current key set; the envelope is unusable afterwards. */
  dispose(): void {
    this.#keys.dispose();
  }

  /** Proves the primary key works by sealing and opening a probe in memory. */
  selfTest(): boolean {
    try {
      const workspaceKey = this.#keys.primary.workspaceKey(this.#kmsWorkspace);
      const sealed = seal(workspaceKey, KMS_V2_CONTEXT, PROBE);
      return Buffer.from(open(workspaceKey, KMS_V2_CONTEXT, sealed)).equals(PROBE);
    } catch {
      return false;
    }
  }

  /**
   * Refuses every operation once custody has been lost for longer than the grace period
   * (SPEC.md §3): revoking the provider key is honoured, for field batches too.
   */
  requireUsable(): void {
    const health = this.#health.snapshot();
    if (health.suspended) {
      throw new KmsEnvelopeError(
        "ENCRYPTION_SUSPENDED",
        `custody provider has failed for longer than the grace period (${health.errorClass ?? "other"}): restore access to the provider key`,
      );
    }
  }
}

function kmsContext(api: KmsApi): Uint8Array {
  return api === "v2" ? KMS_V2_CONTEXT : KMS_V1_CONTEXT;
}
