// @ts-check
/**
 * A custody provider module for kms-envelope, as an operator would write one: master keys are
 * wrapped with AES-256-GCM under a 32-byte key-encryption key (KEK) kept in a file — a Secret
 * mounted with `defaultMode: 0400`, or a key your secret store writes to the node.
 *
 *   (umask 077 && head -c 32 /dev/urandom > /etc/kms-envelope/kek)
 *   kms-envelope keygen --provider ./kek-file.mjs --key-ref file:/etc/kms-envelope/kek --keyring keyring.yaml
 *   kms-envelope serve --keyring keyring.yaml --provider-module ./kek-file.mjs
 *
 * Plain JavaScript, so the built command loads it as it is; `// @ts-check` and the JSDoc types
 * from `kms-envelope/providers` let an editor or `tsc --checkJs` hold it to the interface.
 *
 * - The key reference is `file:` and an absolute path: the keyring records it, and a daemon
 *   started from another directory must find the same file.
 * - The KEK is read for each call and wiped when the call ends, so no copy outlives a call, and
 *   deleting the file or taking its permissions away acts like disabling a cloud key: the
 *   daemon's next health check fails as `user` and its grace period starts.
 * - A KEK file that group or others may read or write is refused, as ssh refuses such keys.
 * - A wrapped key is `1 ‖ nonce(12) ‖ ciphertext(32) ‖ tag(16)`, authenticated together with the
 *   key id it was wrapped for, so a keyring entry moved to another key id does not unwrap.
 * - Errors name the file and what to do; none carries key bytes.
 */
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { open } from "node:fs/promises";
import { isAbsolute } from "node:path";
import { KmsEnvelopeError, ProviderError } from "kms-envelope/providers";

/**
 * @typedef {import("kms-envelope/providers").CustodyProvider} CustodyProvider
 * @typedef {import("kms-envelope/providers").ProviderKeyDescription} ProviderKeyDescription
 * @typedef {import("kms-envelope/providers").WrapContext} WrapContext
 */

/** The provider's name: the prefix of every key id it wraps (`kek-file:…`). */
export const name = "kek-file";

const KEY_REF_PREFIX = "file:";
const FORMAT = 1;
const KEY_BYTES = 32;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const WRAPPED_BYTES = 1 + NONCE_BYTES + KEY_BYTES + TAG_BYTES;
const AAD_LABEL = Buffer.from(`kms-envelope-example/${name}/v${FORMAT}\u0000`, "utf8");

// What a failed open() means to an operator: these need someone to restore the file.
const OPERATOR_ERRNOS = new Set(["ENOENT", "EACCES", "EPERM", "EISDIR", "ENOTDIR", "ELOOP"]);

/** @param {WrapContext} context */
function additionalData(context) {
  return Buffer.concat([AAD_LABEL, Buffer.from(context.keyId, "utf8")]);
}

/** @param {AbortSignal | undefined} signal */
function checkNotAborted(signal) {
  if (signal?.aborted) throw new ProviderError("other", `${name}: the caller gave up`);
}

/**
 * Reads the KEK into a buffer of its own (never the shared pool), so the caller can wipe it.
 * @param {string} path
 * @returns {Promise<Buffer>}
 */
async function readKek(path) {
  /** @type {import("node:fs/promises").FileHandle} */
  let handle;
  try {
    handle = await open(path, "r");
  } catch (error) {
    const code = /** @type {NodeJS.ErrnoException} */ (error).code ?? "unknown error";
    throw new ProviderError(
      OPERATOR_ERRNOS.has(code) ? "user" : "other",
      `${name}: cannot open the key-encryption key ${path} (${code}): restore the file or its permissions`,
      { cause: error },
    );
  }
  try {
    // Checked on the open file, so a file swapped after the check is not what gets read.
    const stats = await handle.stat();
    if (!stats.isFile() || stats.size !== KEY_BYTES) {
      throw new ProviderError(
        "user",
        `${name}: ${path} must be a file of exactly ${KEY_BYTES} random bytes`,
      );
    }
    if ((stats.mode & 0o077) !== 0) {
      throw new ProviderError(
        "user",
        `${name}: ${path} is open to group or others: chmod 600 it (or defaultMode 0400 for a Secret volume)`,
      );
    }
    const kek = Buffer.alloc(KEY_BYTES);
    const { bytesRead } = await handle.read(kek, 0, KEY_BYTES, 0);
    if (bytesRead !== KEY_BYTES) {
      kek.fill(0);
      throw new ProviderError("other", `${name}: ${path} changed while it was read`);
    }
    return kek;
  } finally {
    await handle.close();
  }
}

/** @implements {CustodyProvider} */
class KekFileProvider {
  name = name;
  /** @type {string} */
  #keyRef;
  /** @type {string} */
  #path;
  #closed = false;

  /** @param {string} keyRef */
  constructor(keyRef) {
    const path = keyRef.slice(KEY_REF_PREFIX.length);
    if (!keyRef.startsWith(KEY_REF_PREFIX) || !isAbsolute(path)) {
      throw new KmsEnvelopeError(
        "INVALID_CONFIG",
        `${name}: key reference ${JSON.stringify(keyRef)} is not file:<absolute path of the key-encryption key>`,
      );
    }
    this.#keyRef = keyRef;
    this.#path = path;
  }

  /** @returns {ProviderKeyDescription} */
  describe() {
    return { provider: name, keyRef: this.#keyRef };
  }

  /**
   * @param {Uint8Array} key
   * @param {WrapContext} context
   * @param {AbortSignal} [signal]
   * @returns {Promise<Uint8Array>}
   */
  async wrapKey(key, context, signal) {
    if (key.length !== KEY_BYTES) {
      // Refused before anything is read: the daemon only ever wraps 32-byte master keys.
      throw new KmsEnvelopeError(
        "INVALID_MASTER_KEY",
        `${name}: a master key is ${KEY_BYTES} bytes, not ${key.length}`,
      );
    }
    const kek = await this.#kek(signal);
    try {
      const nonce = randomBytes(NONCE_BYTES);
      const cipher = createCipheriv("aes-256-gcm", kek, nonce).setAAD(additionalData(context));
      const sealed = cipher.update(key);
      cipher.final();
      return Buffer.concat([Buffer.of(FORMAT), nonce, sealed, cipher.getAuthTag()]);
    } finally {
      kek.fill(0);
    }
  }

  /**
   * @param {Uint8Array} wrapped
   * @param {WrapContext} context
   * @param {AbortSignal} [signal]
   * @returns {Promise<Uint8Array>}
   */
  async unwrapKey(wrapped, context, signal) {
    if (wrapped.length !== WRAPPED_BYTES || wrapped[0] !== FORMAT) {
      throw new ProviderError(
        "corrupt",
        `${name}: the wrapped key is not ${WRAPPED_BYTES} bytes of format ${FORMAT}: the keyring entry is damaged`,
      );
    }
    const bytes = Buffer.from(wrapped.buffer, wrapped.byteOffset, wrapped.byteLength);
    const kek = await this.#kek(signal);
    /** @type {Buffer | undefined} */
    let key;
    try {
      const nonce = bytes.subarray(1, 1 + NONCE_BYTES);
      const decipher = createDecipheriv("aes-256-gcm", kek, nonce)
        .setAAD(additionalData(context))
        .setAuthTag(bytes.subarray(WRAPPED_BYTES - TAG_BYTES));
      key = decipher.update(bytes.subarray(1 + NONCE_BYTES, WRAPPED_BYTES - TAG_BYTES));
      decipher.final();
      return key;
    } catch (error) {
      // update() already wrote out bytes that failed authentication; they are not a key.
      key?.fill(0);
      throw new ProviderError(
        "corrupt",
        `${name}: the wrapped key failed authentication: damaged, wrapped for another key id, or under another key-encryption key than ${this.#path}`,
        { cause: error },
      );
    } finally {
      kek.fill(0);
    }
  }

  /** @param {AbortSignal} [signal] */
  async checkHealth(signal) {
    (await this.#kek(signal)).fill(0);
  }

  // Nothing to wipe here: no KEK outlives the call that read it.
  async close() {
    this.#closed = true;
  }

  /** @param {AbortSignal | undefined} signal */
  async #kek(signal) {
    if (this.#closed) throw new ProviderError("other", `${name}: the provider is closed`);
    checkNotAborted(signal);
    const kek = await readKek(this.#path);
    try {
      checkNotAborted(signal);
    } catch (error) {
      kek.fill(0);
      throw error;
    }
    return kek;
  }
}

/**
 * One provider per key reference; the daemon passes options (timeouts, endpoint) that a local
 * file does not need.
 * @param {string} keyRef
 * @returns {CustodyProvider}
 */
export function createProvider(keyRef) {
  return new KekFileProvider(keyRef);
}
