import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { before, describe, test } from "node:test";
import {
  loadSecretbox,
  SECRETBOX_MAC_BYTES,
  SECRETBOX_NONCE_BYTES,
  secretboxOpen,
  secretboxSeal,
} from "../../../src/crypto/secretbox.js";

/** libsodium test/default/secretbox.c and secretbox2.c (test/vectors/libsodium-secretbox.json). */
interface SecretboxVector {
  name: string;
  key_hex: string;
  nonce_hex: string;
  plaintext_hex: string;
  boxed_hex: string;
}

const vectors = JSON.parse(
  readFileSync(new URL("../../vectors/libsodium-secretbox.json", import.meta.url), "utf8"),
) as { cases: SecretboxVector[] };

function fromHex(hex: string): Uint8Array {
  return new Uint8Array(Buffer.from(hex, "hex"));
}

function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("hex");
}

function flipped(bytes: Uint8Array, index: number): Uint8Array {
  const copy = Uint8Array.from(bytes);
  copy[index] = (bytes[index] as number) ^ 0x01;
  return copy;
}

// Declared first on purpose: node:test runs top-level tests in order, so this one sees the
// module before any loadSecretbox() call below.
test("secretbox refuses to seal or open before loadSecretbox() has completed", () => {
  const message = { message: "loadSecretbox() must complete before sealing or opening" };
  const key = new Uint8Array(32);
  const nonce = new Uint8Array(SECRETBOX_NONCE_BYTES);
  assert.throws(() => secretboxSeal(new Uint8Array(1), nonce, key), message);
  assert.throws(() => secretboxOpen(new Uint8Array(SECRETBOX_MAC_BYTES), nonce, key), message);
});

describe("libsodium crypto_secretbox known answer (XSalsa20-Poly1305)", () => {
  before(async () => {
    await loadSecretbox();
  });

  for (const vector of vectors.cases) {
    describe(vector.name, () => {
      const key = fromHex(vector.key_hex);
      const nonce = fromHex(vector.nonce_hex);
      const plaintext = fromHex(vector.plaintext_hex);
      const boxed = fromHex(vector.boxed_hex);

      test("the vector has libsodium's sizes: 32-byte key, 24-byte nonce, 131-byte message, 147-byte box", () => {
        assert.equal(key.length, 32);
        assert.equal(nonce.length, SECRETBOX_NONCE_BYTES);
        assert.equal(plaintext.length, 131);
        assert.equal(boxed.length, SECRETBOX_MAC_BYTES + plaintext.length);
      });

      test("secretboxSeal outputs libsodium's MAC || ciphertext byte for byte", () => {
        assert.equal(toHex(secretboxSeal(plaintext, nonce, key)), vector.boxed_hex);
      });

      test("secretboxOpen returns libsodium's message from libsodium's box", () => {
        const opened = secretboxOpen(boxed, nonce, key);
        assert.ok(opened !== undefined);
        assert.equal(toHex(opened), vector.plaintext_hex);
      });

      test("secretboxOpen returns undefined when any single byte of the MAC or ciphertext is flipped", () => {
        for (let index = 0; index < boxed.length; index++) {
          assert.equal(
            secretboxOpen(flipped(boxed, index), nonce, key),
            undefined,
            `byte ${index}`,
          );
        }
      });

      test("secretboxOpen returns undefined under a flipped nonce byte or a flipped key byte", () => {
        for (let index = 0; index < nonce.length; index++) {
          assert.equal(
            secretboxOpen(boxed, flipped(nonce, index), key),
            undefined,
            `nonce ${index}`,
          );
        }
        for (let index = 0; index < key.length; index++) {
          assert.equal(secretboxOpen(boxed, nonce, flipped(key, index)), undefined, `key ${index}`);
        }
      });

      test("secretboxOpen returns undefined for a box cut short or shorter than the MAC", () => {
        assert.equal(secretboxOpen(boxed.subarray(0, boxed.length - 1), nonce, key), undefined);
        assert.equal(
          secretboxOpen(boxed.subarray(0, SECRETBOX_MAC_BYTES - 1), nonce, key),
          undefined,
        );
        assert.equal(secretboxOpen(new Uint8Array(0), nonce, key), undefined);
      });
    });
  }
});
