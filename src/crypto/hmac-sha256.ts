import type { SodiumNative } from "./secretbox.js";

const BLOCK_BYTES = 64;
const DIGEST_BYTES = 32;
const INNER_PAD = 0x36;
const OUTER_PAD = 0x5c;

/**
 * HMAC-SHA256 (RFC 2104) on sodium-native's incremental SHA-256, into caller-owned buffers.
 * The record-key HKDF runs two HMACs per sealed value; node:crypto makes an OpenSSL context
 * and a JavaScript object for each, which at KMS call rates cost as much in garbage collection
 * as in hashing. Here nothing is allocated per call, and the scratch that held key material
 * (the padded key, the hash state, the inner digest) is zeroed before returning. The RFC 4231
 * and RFC 5869 vectors hold it to node:crypto's bytes.
 */
export class NativeHmacSha256 {
  readonly #addon: SodiumNative;
  // pad(key) || message for the inner hash, then pad(key) || inner digest for the outer one:
  // one-shot hashes of one buffer cost fewer calls into the addon than the incremental API.
  #scratch = new Uint8Array(BLOCK_BYTES + 128);
  // Views of the scratch, kept: each call into the addon costs about as much as hashing two
  // blocks on this class of machine, and a view made per hash adds garbage besides.
  #outerInput = this.#scratch.subarray(0, BLOCK_BYTES + DIGEST_BYTES);
  /** Inner-hash inputs by length (an HKDF alternates two). */
  #innerInputs: Uint8Array[] = [];
  readonly #inner = new Uint8Array(DIGEST_BYTES);
  readonly #hashedKey = new Uint8Array(DIGEST_BYTES);

  constructor(addon: SodiumNative) {
    this.#addon = addon;
  }

  /** Writes HMAC-SHA256(key, first || second) into `out` (32 bytes). */
  macInto(out: Uint8Array, key: Uint8Array, first: Uint8Array, second?: Uint8Array): void {
    const addon = this.#addon;
    const messageBytes = first.length + (second === undefined ? 0 : second.length);
    const innerInput = this.#innerInputOf(BLOCK_BYTES + messageBytes);
    const scratch = this.#scratch;
    // A key longer than a block is replaced by its digest (RFC 2104 §2).
    let blockKey = key;
    if (key.length > BLOCK_BYTES) {
      addon.crypto_hash_sha256(this.#hashedKey, key);
      blockKey = this.#hashedKey;
    }
    try {
      padKey(scratch, blockKey, INNER_PAD);
      scratch.set(first, BLOCK_BYTES);
      if (second !== undefined) scratch.set(second, BLOCK_BYTES + first.length);
      addon.crypto_hash_sha256(this.#inner, innerInput);
      padKey(scratch, blockKey, OUTER_PAD);
      scratch.set(this.#inner, BLOCK_BYTES);
      addon.crypto_hash_sha256(out, this.#outerInput);
    } finally {
      scratch.fill(0, 0, BLOCK_BYTES + Math.max(messageBytes, DIGEST_BYTES));
      this.#inner.fill(0);
      if (blockKey !== key) this.#hashedKey.fill(0);
    }
  }

  /** The first `length` bytes of the scratch, grown when a message does not fit. */
  #innerInputOf(length: number): Uint8Array {
    const kept = this.#innerInputs[length];
    if (kept !== undefined) return kept;
    if (this.#scratch.length < length) {
      this.#scratch = new Uint8Array(length);
      this.#outerInput = this.#scratch.subarray(0, BLOCK_BYTES + DIGEST_BYTES);
      this.#innerInputs = [];
    }
    const view = this.#scratch.subarray(0, length);
    // Only the usual short messages are kept, so a large one cannot pin a large array.
    if (length <= BLOCK_BYTES + 128) this.#innerInputs[length] = view;
    return view;
  }
}

/** The first block of `scratch` = key, zero-padded to a block, XOR `pad` in every byte. */
function padKey(scratch: Uint8Array, key: Uint8Array, pad: number): void {
  scratch.fill(pad, 0, BLOCK_BYTES);
  for (let index = 0; index < key.length; index++)
    scratch[index] = (scratch[index] as number) ^ (key[index] as number);
}
