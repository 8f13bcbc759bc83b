import { createHash } from "node:crypto";
import { KmsEnvelopeError } from "../../errors.js";
import type { ExtendedNonceGcmTransformer } from "../transformers/aes-gcm-extended-nonce.js";
import { DekSourceType, type EncryptedObject } from "./encrypted-object.js";
import {
  ACCEPTED_VERSIONS,
  annotationsProblem,
  encryptedDekSourceProblem,
  keyIdProblem,
} from "./kms-v2-rules.js";

/** The seed kube-apiserver writes with: what the plugin's Encrypt gave for it, and its key. */
export interface WriteSeed {
  readonly keyId: string;
  readonly encryptedDekSource: Uint8Array;
  readonly annotations: ReadonlyMap<string, Uint8Array>;
  readonly transformer: ExtendedNonceGcmTransformer;
}

/** What a Status call answered. */
interface StatusAnswer {
  readonly version: string;
  readonly healthz: string;
  readonly keyId: string;
}

/** What an Encrypt call answered for a new seed. */
interface EncryptAnswer {
  readonly ciphertext: Uint8Array;
  readonly keyId: string;
  readonly annotations: ReadonlyMap<string, Uint8Array>;
}

/** Key ids are public but can be long; errors name them by hash as kube-apiserver logs do. */
function keyIdHash(keyId: string): string {
  return `sha256:${createHash("sha256").update(keyId).digest("hex")}`;
}

/** The one refusal of a kms v2 provider, naming it. */
export function refuse(name: string, problem: string): KmsEnvelopeError {
  return new KmsEnvelopeError(
    "KMS_PLUGIN_FAILED",
    `kms v2 provider ${JSON.stringify(name)}: ${problem}`,
  );
}

/**
 * The state kube-apiserver's kms v2 provider keeps between plugin calls, and its rules
 * (KMS-CONTRACT.md §2.2), without any I/O or timer, so they are tested with a fake clock:
 * the API version is pinned by the first healthy Status; the write seed is replaced when
 * Status reports a new key id and stays usable for `writeTtlMs` after the last healthy check
 * (counted from before the call); a read is stale when written under another key id or the
 * older AES-GCM-key mode.
 */
export class KmsV2SeedState {
  readonly #name: string;
  readonly #writeTtlMs: number;
  #seed: WriteSeed | undefined;
  #expiresAt = 0;
  #version: string | undefined;

  constructor(name: string, writeTtlMs: number) {
    this.#name = name;
    this.#writeTtlMs = writeTtlMs;
  }

  /** The seed writes would use, expired or not; undefined before the first healthy check. */
  get seed(): WriteSeed | undefined {
    return this.#seed;
  }

  /** When the current seed stops being usable for writes (ms since epoch). */
  get expiresAt(): number {
    return this.#expiresAt;
  }

  /** Why a Status answer is refused, or undefined; the first accepted version is pinned. */
  statusProblem(status: StatusAnswer): string | undefined {
    if (status.healthz !== "ok")
      return `got unexpected healthz status: ${JSON.stringify(status.healthz.slice(0, 200))}`;
    if (!ACCEPTED_VERSIONS.includes(status.version))
      return `expected KMSv2 API version v2, got ${JSON.stringify(status.version.slice(0, 40))}`;
    if (this.#version !== undefined && this.#version !== status.version)
      return `KMSv2 API version should not change, was ${this.#version}, now ${status.version}`;
    this.#version = status.version;
    const keyProblem = keyIdProblem(status.keyId);
    return keyProblem === undefined ? undefined : `Status: ${keyProblem}`;
  }

  /**
   * After a healthy Status check that began at `startedAt`: true when a new seed is needed
   * (none yet, or the key id changed); otherwise the current seed's life is extended.
   */
  needsSeed(statusKeyId: string, startedAt: number): boolean {
    if (this.#seed !== undefined && this.#seed.keyId === statusKeyId) {
      this.#expiresAt = startedAt + this.#writeTtlMs;
      return false;
    }
    return true;
  }

  /** Why an Encrypt answer for a new seed is refused (limits, key id agreement), or undefined. */
  encryptProblem(answer: EncryptAnswer, statusKeyId: string): string | undefined {
    const problem =
      encryptedDekSourceProblem(answer.ciphertext) ??
      keyIdProblem(answer.keyId) ??
      annotationsProblem(answer.annotations) ??
      (answer.keyId === statusKeyId
        ? undefined
        : `Encrypt returned key id ${keyIdHash(answer.keyId)} but Status reported ${keyIdHash(statusKeyId)}`);
    return problem === undefined ? undefined : `Encrypt: ${problem}`;
  }

  /** Installs a new seed from a check that began at `startedAt`; returns the one it replaces. */
  install(seed: WriteSeed, startedAt: number): WriteSeed | undefined {
    const previous = this.#seed;
    this.#seed = seed;
    this.#expiresAt = startedAt + this.#writeTtlMs;
    return previous;
  }

  /** The seed for a write at `now`, or the refusal that says why there is none. */
  forWrite(now: number, lastProblem: string | undefined): WriteSeed {
    const seed = this.forRead(lastProblem);
    if (now > this.#expiresAt)
      throw refuse(
        this.#name,
        `the DEK seed for key id ${keyIdHash(seed.keyId)} expired at ${new Date(this.#expiresAt).toISOString()} because the plugin has not passed a Status check since (${lastProblem ?? "unknown"}); writes resume at the next healthy check`,
      );
    return seed;
  }

  /** The current seed; as in kube-apiserver, reads too need one healthy check since start. */
  forRead(lastProblem: string | undefined): WriteSeed {
    if (this.#seed === undefined)
      throw refuse(
        this.#name,
        `the plugin has not passed a Status check since start (${lastProblem ?? "unknown"}); start the plugin or fix the endpoint`,
      );
    return this.#seed;
  }

  /** Whether a value read from `object` should be rewritten under the current seed. */
  isStale(object: EncryptedObject, current: WriteSeed): boolean {
    return (
      object.keyId !== current.keyId ||
      object.dekSourceType !== DekSourceType.HkdfSha256XNonceAesGcmSeed
    );
  }
}
