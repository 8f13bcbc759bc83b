// Prototypes of cheaper, byte-compatible versions of the daemon's per-value crypto (SPEC §2:
// sealed = nonce || secretbox(plaintext, nonce, HKDF-SHA256(W, salt = nonce, info = context))).
// Used only by the benchmarks to size optimisation suggestions; crypto-micro.ts checks they
// give the same bytes as src/crypto.
import { createHmac, hash, randomFillSync } from "node:crypto";
import sodium from "libsodium-wrappers";
import { SEALED_MIN_BYTES } from "../src/crypto/sealed.js";
import { SECRETBOX_NONCE_BYTES, secretboxOpen, secretboxSeal } from "../src/crypto/secretbox.js";
import { DecryptionFailedError } from "../src/errors.js";

const ONE = Buffer.from([1]);

/**
 * HKDF-SHA256 with L = 32 (= HashLen), so a single expand block (RFC 5869):
 * PRK = HMAC(salt = nonce, IKM = W); OKM = T(1) = HMAC(PRK, info || 0x01).
 */
export function hkdfViaHmac(
  workspaceKey: Uint8Array,
  nonce: Uint8Array,
  context: Uint8Array,
): Buffer {
  const prk = createHmac("sha256", nonce).update(workspaceKey).digest();
  const okm = createHmac("sha256", prk).update(context).update(ONE).digest();
  prk.fill(0);
  return okm;
}

// HMAC-SHA256 from one-shot SHA-256 (crypto.hash, Node >= 20.12) for keys of at most 64 bytes:
// H((K ^ opad) || H((K ^ ipad) || message)).
function hmacViaHash(key: Uint8Array, ...message: Uint8Array[]): Buffer {
  const inner = Buffer.alloc(64, 0x36);
  const outer = Buffer.alloc(64, 0x5c);
  for (let index = 0; index < key.length; index++) {
    inner[index] = (inner[index] as number) ^ (key[index] as number);
    outer[index] = (outer[index] as number) ^ (key[index] as number);
  }
  const innerDigest = hash("sha256", Buffer.concat([inner, ...message]), "buffer");
  return hash("sha256", Buffer.concat([outer, innerDigest]), "buffer");
}

/** The same HKDF from four one-shot SHA-256 calls. */
export function hkdfViaHash(
  workspaceKey: Uint8Array,
  nonce: Uint8Array,
  context: Uint8Array,
): Buffer {
  return hmacViaHash(hmacViaHash(nonce, workspaceKey), context, ONE);
}

/** Nonces cut from one larger CSPRNG fill instead of one randomBytes call each. */
export class NoncePool {
  #pool = Buffer.alloc(0);
  #offset = 0;
  readonly #size: number;

  constructor(nonces = 256) {
    this.#size = nonces * SECRETBOX_NONCE_BYTES;
  }

  /** Copies the next unused bytes out of the pool; used bytes are zeroed. */
  take(length = SECRETBOX_NONCE_BYTES): Buffer {
    if (this.#offset + length > this.#pool.length) {
      this.#pool = Buffer.allocUnsafeSlow(this.#size);
      randomFillSync(this.#pool);
      this.#offset = 0;
    }
    const slice = this.#pool.subarray(this.#offset, this.#offset + length);
    const out = Buffer.from(slice);
    slice.fill(0);
    this.#offset += length;
    return out;
  }
}

const nonces = new NoncePool();

/** seal() of src/crypto/sealed.ts with HMAC-based HKDF and pooled nonces. */
export function fastSeal(
  workspaceKey: Uint8Array,
  context: Uint8Array,
  plaintext: Uint8Array,
): Uint8Array {
  const nonce = nonces.take();
  const recordKey = hkdfViaHmac(workspaceKey, nonce, context);
  try {
    const boxed = secretboxSeal(plaintext, nonce, recordKey);
    const sealed = new Uint8Array(SECRETBOX_NONCE_BYTES + boxed.length);
    sealed.set(nonce, 0);
    sealed.set(boxed, SECRETBOX_NONCE_BYTES);
    return sealed;
  } finally {
    recordKey.fill(0);
  }
}

/** open() of src/crypto/sealed.ts with HMAC-based HKDF. */
export function fastOpen(
  workspaceKey: Uint8Array,
  context: Uint8Array,
  sealed: Uint8Array,
): Uint8Array {
  if (sealed.length < SEALED_MIN_BYTES) throw new DecryptionFailedError();
  const nonce = sealed.subarray(0, SECRETBOX_NONCE_BYTES);
  const recordKey = hkdfViaHmac(workspaceKey, nonce, context);
  try {
    const plaintext = secretboxOpen(sealed.subarray(SECRETBOX_NONCE_BYTES), nonce, recordKey);
    if (plaintext === undefined) throw new DecryptionFailedError();
    return plaintext;
  } finally {
    recordKey.fill(0);
  }
}

// ------------------------------------------------------------------ all-WebAssembly variant

/** The raw libsodium module under libsodium-wrappers (its HKDF is exported but not wrapped). */
interface SodiumModule {
  HEAPU8: Uint8Array;
  _malloc(size: number): number;
  _free(pointer: number): void;
  _crypto_kdf_hkdf_sha256_extract(
    prk: number,
    salt: number,
    saltLength: number,
    ikm: number,
    ikmLength: number,
  ): number;
  _crypto_kdf_hkdf_sha256_expand(
    out: number,
    outLength: number,
    context: number,
    contextLength: number,
    prk: number,
  ): number;
  _crypto_secretbox_easy(
    out: number,
    message: number,
    lengthLow: number,
    lengthHigh: number,
    nonce: number,
    key: number,
  ): number;
  _crypto_secretbox_open_easy(
    out: number,
    boxed: number,
    lengthLow: number,
    lengthHigh: number,
    nonce: number,
    key: number,
  ): number;
}

const MAC = 16;

/**
 * HKDF and secretbox both inside libsodium's WebAssembly, on a reused scratch area: no native
 * objects per value (createHmac/hkdfSync allocate OpenSSL contexts and KeyObjects that the GC
 * must finalise) and one copy in, one copy out. Call after loadSecretbox().
 */
export class WasmSealer {
  readonly #module: SodiumModule;
  #base = 0;
  #capacity = 0;

  constructor() {
    const module = (sodium as unknown as { libsodium?: SodiumModule }).libsodium;
    if (module === undefined || typeof module._crypto_kdf_hkdf_sha256_extract !== "function") {
      throw new Error("libsodium module with crypto_kdf_hkdf_sha256 is not available");
    }
    this.#module = module;
  }

  // Layout: prk 32 | key 32 | nonce 24 | ikm 32 | context | message | boxed (message + 16).
  #reserve(contextLength: number, messageLength: number): number {
    const needed = 120 + contextLength + 2 * messageLength + MAC;
    if (needed > this.#capacity) {
      if (this.#base !== 0) this.#module._free(this.#base);
      this.#capacity = Math.max(needed, 4096);
      this.#base = this.#module._malloc(this.#capacity);
    }
    return this.#base;
  }

  #deriveKey(base: number, workspaceKey: Uint8Array, nonce: Uint8Array, context: Uint8Array): void {
    const heap = this.#module.HEAPU8;
    heap.set(nonce, base + 64);
    heap.set(workspaceKey, base + 88);
    heap.set(context, base + 120);
    this.#module._crypto_kdf_hkdf_sha256_extract(base, base + 64, 24, base + 88, 32);
    this.#module._crypto_kdf_hkdf_sha256_expand(base + 32, 32, base + 120, context.length, base);
  }

  seal(workspaceKey: Uint8Array, context: Uint8Array, plaintext: Uint8Array): Uint8Array {
    const base = this.#reserve(context.length, plaintext.length);
    const nonce = nonces.take();
    this.#deriveKey(base, workspaceKey, nonce, context);
    const message = base + 120 + context.length;
    const boxed = message + plaintext.length;
    const heap = this.#module.HEAPU8;
    heap.set(plaintext, message);
    this.#module._crypto_secretbox_easy(boxed, message, plaintext.length, 0, base + 64, base + 32);
    const sealed = new Uint8Array(SECRETBOX_NONCE_BYTES + plaintext.length + MAC);
    sealed.set(nonce, 0);
    sealed.set(heap.subarray(boxed, boxed + plaintext.length + MAC), SECRETBOX_NONCE_BYTES);
    heap.fill(0, base, boxed);
    return sealed;
  }

  open(workspaceKey: Uint8Array, context: Uint8Array, sealed: Uint8Array): Uint8Array {
    if (sealed.length < SEALED_MIN_BYTES) throw new DecryptionFailedError();
    const length = sealed.length - SECRETBOX_NONCE_BYTES - MAC;
    const base = this.#reserve(context.length, length);
    this.#deriveKey(base, workspaceKey, sealed.subarray(0, SECRETBOX_NONCE_BYTES), context);
    const message = base + 120 + context.length;
    const boxed = message + length;
    const heap = this.#module.HEAPU8;
    heap.set(sealed.subarray(SECRETBOX_NONCE_BYTES), boxed);
    const failed = this.#module._crypto_secretbox_open_easy(
      message,
      boxed,
      length + MAC,
      0,
      base + 64,
      base + 32,
    );
    const plaintext = failed === 0 ? heap.slice(message, message + length) : undefined;
    heap.fill(0, base, boxed);
    if (plaintext === undefined) throw new DecryptionFailedError();
    return plaintext;
  }
}
