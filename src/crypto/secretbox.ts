import { createRequire } from "node:module";
import sodium from "libsodium-wrappers";

/** XSalsa20-Poly1305 sizes (libsodium `crypto_secretbox_*`). */
export const SECRETBOX_NONCE_BYTES = 24;
export const SECRETBOX_MAC_BYTES = 16;

/**
 * One implementation of libsodium's crypto_secretbox: the native addon (sodium-native) or the
 * WebAssembly build (libsodium-wrappers). Both are libsodium, so their bytes are the same; the
 * native one skips WebAssembly's copies in and out of its heap.
 */
export interface SecretboxBackend {
  readonly name: "sodium-native" | "libsodium-wrappers";
  /** crypto_secretbox_easy into `out` (MAC || ciphertext, `plaintext.length` + 16 bytes). */
  sealInto(out: Uint8Array, plaintext: Uint8Array, nonce: Uint8Array, key: Uint8Array): void;
  /** crypto_secretbox_open_easy: the plaintext, or undefined when authentication fails. */
  open(boxed: Uint8Array, nonce: Uint8Array, key: Uint8Array): Uint8Array | undefined;
}

/** The part of sodium-native's API used here and by the native HMAC (hmac-sha256.ts). */
export interface SodiumNative {
  crypto_secretbox_easy(c: Uint8Array, m: Uint8Array, n: Uint8Array, k: Uint8Array): void;
  crypto_secretbox_open_easy(m: Uint8Array, c: Uint8Array, n: Uint8Array, k: Uint8Array): boolean;
  crypto_hash_sha256(out: Uint8Array, input: Uint8Array): void;
}

/**
 * `length` bytes cut from Node's buffer pool, uninitialised, as a plain Uint8Array (what callers
 * of the byte APIs get and compare against): a typed array over 64 bytes of its own is
 * allocated outside the heap, which for a field-sized value costs about as much as the cipher.
 * The caller writes every byte.
 */
export function pooledBytes(length: number): Uint8Array {
  const cut = Buffer.allocUnsafe(length);
  return new Uint8Array(cut.buffer, cut.byteOffset, length);
}

const wasm: SecretboxBackend = {
  name: "libsodium-wrappers",
  sealInto(out, plaintext, nonce, key) {
    out.set(sodium.crypto_secretbox_easy(plaintext, nonce, key));
  },
  open(boxed, nonce, key) {
    try {
      return sodium.crypto_secretbox_open_easy(boxed, nonce, key);
    } catch {
      // libsodium throws for a failed MAC and for wrong sizes; callers check sizes first, so in
      // practice this is the MAC failure, which the caller turns into the one generic error.
      return undefined;
    }
  },
};

function nativeBackend(addon: SodiumNative): SecretboxBackend & { readonly addon: SodiumNative } {
  return {
    name: "sodium-native",
    addon,
    sealInto(out, plaintext, nonce, key) {
      addon.crypto_secretbox_easy(out, plaintext, nonce, key);
    },
    open(boxed, nonce, key) {
      // The addon asserts its sizes (a thrown assertion); the WebAssembly build's answer to a
      // box shorter than its MAC is a refusal, and so is this one.
      if (boxed.length < SECRETBOX_MAC_BYTES) return undefined;
      // Every byte is written on success, and libsodium checks the MAC before it writes any.
      const plaintext = pooledBytes(boxed.length - SECRETBOX_MAC_BYTES);
      return addon.crypto_secretbox_open_easy(plaintext, boxed, nonce, key) ? plaintext : undefined;
    },
  };
}

/** sodium-native when it is installed and loads on this platform (it is an optional dependency). */
function loadNative(): ReturnType<typeof nativeBackend> | undefined {
  try {
    return nativeBackend(createRequire(import.meta.url)("sodium-native") as SodiumNative);
  } catch {
    return undefined;
  }
}

let backend: SecretboxBackend | undefined;
let nativeAddon: SodiumNative | undefined;

/**
 * Every backend that loads here, native first. `loadSecretbox` picks the first; the tests hold
 * each to libsodium's known answers and to the others, byte for byte.
 */
export async function secretboxBackends(): Promise<SecretboxBackend[]> {
  await sodium.ready;
  const native = loadNative();
  return native === undefined ? [wasm] : [native, wasm];
}

/**
 * Chooses the backend; call once before any seal or open. `KMS_ENVELOPE_SODIUM=wasm` keeps the
 * WebAssembly build even where the native addon loads.
 */
export async function loadSecretbox(): Promise<void> {
  if (backend !== undefined) return;
  const available = await secretboxBackends();
  backend = (process.env.KMS_ENVELOPE_SODIUM === "wasm" ? available.at(-1) : available[0]) ?? wasm;
  nativeAddon = "addon" in backend ? (backend.addon as SodiumNative) : undefined;
}

/**
 * The sodium-native addon when it is the backend in use, so that the record-key HKDF runs on
 * the same native library (hmac-sha256.ts); undefined before loadSecretbox() and with the
 * WebAssembly build, which leaves HKDF to node:crypto.
 */
export function sodiumNativeInUse(): SodiumNative | undefined {
  return nativeAddon;
}

/** The backend in use: for the start-up log line and the benchmark's report. */
export function secretboxBackendName(): SecretboxBackend["name"] {
  return loaded().name;
}

function loaded(): SecretboxBackend {
  if (backend === undefined)
    throw new Error("loadSecretbox() must complete before sealing or opening");
  return backend;
}

/** crypto_secretbox_easy into `out`: MAC || ciphertext, `plaintext.length` + 16 bytes. */
export function secretboxSealInto(
  out: Uint8Array,
  plaintext: Uint8Array,
  nonce: Uint8Array,
  key: Uint8Array,
): void {
  if (out.length !== plaintext.length + SECRETBOX_MAC_BYTES)
    throw new RangeError(`a secretbox is ${SECRETBOX_MAC_BYTES} bytes longer than its plaintext`);
  loaded().sealInto(out, plaintext, nonce, key);
}

/** crypto_secretbox_easy: returns MAC || ciphertext. */
export function secretboxSeal(
  plaintext: Uint8Array,
  nonce: Uint8Array,
  key: Uint8Array,
): Uint8Array {
  const out = new Uint8Array(plaintext.length + SECRETBOX_MAC_BYTES);
  secretboxSealInto(out, plaintext, nonce, key);
  return out;
}

/** crypto_secretbox_open_easy: returns the plaintext, or undefined when authentication fails. */
export function secretboxOpen(
  boxed: Uint8Array,
  nonce: Uint8Array,
  key: Uint8Array,
): Uint8Array | undefined {
  return loaded().open(boxed, nonce, key);
}
