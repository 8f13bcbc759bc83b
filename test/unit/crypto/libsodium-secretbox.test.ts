import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { before, describe, test } from "node:test";
import fc from "fast-check";
import {
  loadSecretbox,
  SECRETBOX_MAC_BYTES,
  SECRETBOX_NONCE_BYTES,
  type SecretboxBackend,
  secretboxBackendName,
  secretboxBackends,
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

const backends = await secretboxBackends();

test("both backends load here: sodium-native (prebuilt for this platform) and libsodium-wrappers", () => {
  assert.deepEqual(
    backends.map((backend) => backend.name),
    ["sodium-native", "libsodium-wrappers"],
  );
});

test("secretboxSeal and secretboxOpen use sodium-native once loaded, and KMS_ENVELOPE_SODIUM=wasm keeps libsodium-wrappers", async () => {
  await loadSecretbox();
  assert.equal(secretboxBackendName(), "sodium-native");
  const child = spawnSync(
    process.execPath,
    [
      "--import",
      "tsx",
      "--input-type=module",
      "-e",
      `const s = await import(${JSON.stringify(new URL("../../../src/crypto/secretbox.ts", import.meta.url).href)}); await s.loadSecretbox(); console.log(s.secretboxBackendName());`,
    ],
    { env: { ...process.env, KMS_ENVELOPE_SODIUM: "wasm" }, encoding: "utf8" },
  );
  assert.equal(child.stdout.trim(), "libsodium-wrappers", child.stderr);
});

for (const backend of backends) {
  describe(`${backend.name}: libsodium crypto_secretbox known answer (XSalsa20-Poly1305)`, () => {
    const seal = (plaintext: Uint8Array, nonce: Uint8Array, key: Uint8Array) => {
      const out = new Uint8Array(plaintext.length + SECRETBOX_MAC_BYTES);
      backend.sealInto(out, plaintext, nonce, key);
      return out;
    };
    const open = (boxed: Uint8Array, nonce: Uint8Array, key: Uint8Array) =>
      backend.open(boxed, nonce, key);
    for (const vector of vectors.cases) knownAnswer(vector, seal, open);
  });
}

describe("secretboxSeal and secretboxOpen (the loaded backend)", () => {
  before(async () => {
    await loadSecretbox();
  });
  for (const vector of vectors.cases) knownAnswer(vector, secretboxSeal, secretboxOpen);
});

test("the backends agree byte for byte on any key, nonce and message, and open each other's boxes", () => {
  const [native, wasm] = backends as [SecretboxBackend, SecretboxBackend];
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 32, maxLength: 32 }),
      fc.uint8Array({ minLength: SECRETBOX_NONCE_BYTES, maxLength: SECRETBOX_NONCE_BYTES }),
      fc.uint8Array({ maxLength: 2048 }),
      fc.nat(),
      (key, nonce, plaintext, flip) => {
        const boxes = [native, wasm].map((backend) => {
          const out = new Uint8Array(plaintext.length + SECRETBOX_MAC_BYTES);
          backend.sealInto(out, plaintext, nonce, key);
          return out;
        }) as [Uint8Array, Uint8Array];
        assert.equal(toHex(boxes[0]), toHex(boxes[1]));
        assert.equal(
          toHex(wasm.open(boxes[0], nonce, key) ?? new Uint8Array([1])),
          toHex(plaintext),
        );
        assert.equal(
          toHex(native.open(boxes[1], nonce, key) ?? new Uint8Array([1])),
          toHex(plaintext),
        );
        const tampered = flipped(boxes[0], flip % boxes[0].length);
        assert.equal(native.open(tampered, nonce, key), undefined);
        assert.equal(wasm.open(tampered, nonce, key), undefined);
      },
    ),
    { numRuns: 500 },
  );
});

type Seal = (plaintext: Uint8Array, nonce: Uint8Array, key: Uint8Array) => Uint8Array;
type Open = (boxed: Uint8Array, nonce: Uint8Array, key: Uint8Array) => Uint8Array | undefined;

function knownAnswer(vector: SecretboxVector, seal: Seal, open: Open): void {
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

    test("seal outputs libsodium's MAC || ciphertext byte for byte", () => {
      assert.equal(toHex(seal(plaintext, nonce, key)), vector.boxed_hex);
    });

    test("open returns libsodium's message from libsodium's box", () => {
      const opened = open(boxed, nonce, key);
      assert.ok(opened !== undefined);
      assert.equal(toHex(opened), vector.plaintext_hex);
    });

    test("open returns undefined when any single byte of the MAC or ciphertext is flipped", () => {
      for (let index = 0; index < boxed.length; index++) {
        assert.equal(open(flipped(boxed, index), nonce, key), undefined, `byte ${index}`);
      }
    });

    test("open returns undefined under a flipped nonce byte or a flipped key byte", () => {
      for (let index = 0; index < nonce.length; index++) {
        assert.equal(open(boxed, flipped(nonce, index), key), undefined, `nonce ${index}`);
      }
      for (let index = 0; index < key.length; index++) {
        assert.equal(open(boxed, nonce, flipped(key, index)), undefined, `key ${index}`);
      }
    });

    test("open returns undefined for a box cut short or shorter than the MAC", () => {
      assert.equal(open(boxed.subarray(0, boxed.length - 1), nonce, key), undefined);
      assert.equal(open(boxed.subarray(0, SECRETBOX_MAC_BYTES - 1), nonce, key), undefined);
      assert.equal(open(new Uint8Array(0), nonce, key), undefined);
    });
  });
}
