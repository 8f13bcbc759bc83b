import assert from "node:assert/strict";
import { before, describe, it } from "node:test";
import { loadSecretbox } from "../../../src/crypto/secretbox.js";
import { AesCbcTransformer } from "../../../src/engine/transformers/aes-cbc.js";
import { AesGcmTransformer } from "../../../src/engine/transformers/aes-gcm.js";
import {
  ExtendedNonceGcmTransformer,
  hkdfExpandKey,
} from "../../../src/engine/transformers/aes-gcm-extended-nonce.js";
import { IdentityTransformer } from "../../../src/engine/transformers/identity.js";
import { PrefixTransformers } from "../../../src/engine/transformers/prefix-transformers.js";
import { SecretboxTransformer } from "../../../src/engine/transformers/secretbox.js";
import type { Transformer } from "../../../src/engine/transformers/transformer.js";

const hex = (value: string) => Buffer.from(value, "hex");
const text = (value: string) => Buffer.from(value, "utf8");
const writer = (provider: string, keyId = "k") => ({ provider, keyId });

// KMS-CONTRACT.md §6: values recorded from kube-apiserver's own transformers.
const PANDAS = "pandas are the best";
const BAMBOO = text("bamboo");

describe("upstream known-answer vectors (KMS-CONTRACT §6)", () => {
  it("V1: the plain AES-GCM transformer's recorded value decrypts", async () => {
    const gcm = new AesGcmTransformer(hex("736e6f726c61785f617765736f6d6573"), writer("aesgcm"));
    const read = await gcm.fromStorage(
      hex(
        "9f27c8fcea8a58c467d8e437dbf2d85955f9b4bd912f4ef967d788a0cb07797dac0a3f0a0845605ca85ac8562b4ae1",
      ),
      BAMBOO,
    );
    assert.equal(Buffer.from(read.plaintext).toString(), PANDAS);
  });

  it("V2: the HKDF extended-nonce (seed mode) value decrypts, with the recorded derived key", async () => {
    const seed = hex("5d40323a820ff95561675e3b95e81867c5fdd561d35a88a2d08b08aa9d4fcf5c");
    const stored = hex(
      "2442759e33945fbad709db577a0f037fd8a709fc76979b8942209debcecb9d57efe3d6ff6a1ef6ee9a5003b9833b3043cec1e47b35175b151107a8d2416b0e296bbf66b5d102fcefdf9a78f293d271",
    );
    assert.equal(
      hkdfExpandKey(seed, stored.subarray(0, 32)).toString("hex"),
      "6e58b7659c304b0c382f42f16bd700465def1dead80bf6f1bf1d52073bdb0c00",
    );
    const read = await new ExtendedNonceGcmTransformer(seed, writer("kms:v2:x")).fromStorage(
      stored,
      BAMBOO,
    );
    assert.equal(Buffer.from(read.plaintext).toString(), PANDAS);
  });
});

interface Case {
  name: string;
  make: () => Transformer;
  overhead: (plaintextLength: number) => number;
  /** Regions of the stored value: [label, start, end) relative to the value. */
  regions: (length: number) => [string, number, number][];
  authenticatesData: boolean;
}

const key32 = Buffer.alloc(32, 7);
const CASES: Case[] = [
  ...[16, 24, 32].map(
    (size): Case => ({
      name: `aesgcm ${size * 8}-bit`,
      make: () => new AesGcmTransformer(key32.subarray(0, size), writer("aesgcm")),
      overhead: () => 28,
      regions: (length) => [
        ["nonce", 0, 12],
        ["ciphertext", 12, length - 16],
        ["tag", length - 16, length],
      ],
      authenticatesData: true,
    }),
  ),
  {
    name: "kms v2 seed mode (HKDF extended nonce)",
    make: () => new ExtendedNonceGcmTransformer(key32, writer("kms:v2:x")),
    overhead: () => 60,
    regions: (length) => [
      ["info", 0, 32],
      ["nonce", 32, 44],
      ["ciphertext", 44, length - 16],
      ["tag", length - 16, length],
    ],
    authenticatesData: true,
  },
  {
    name: "secretbox",
    make: () => new SecretboxTransformer(key32, writer("secretbox")),
    overhead: () => 40,
    regions: (length) => [
      ["nonce", 0, 24],
      ["tag", 24, 40],
      ["ciphertext", 40, length],
    ],
    authenticatesData: false,
  },
];

describe("transformers round-trip and refuse tampering", () => {
  before(loadSecretbox);

  for (const testCase of CASES) {
    describe(testCase.name, () => {
      it("round-trips empty, short and large values with the documented overhead", async () => {
        const transformer = testCase.make();
        for (const size of [0, 1, 19, 1000, 100_000]) {
          const plaintext = Buffer.alloc(size, size % 251);
          const stored = await transformer.toStorage(plaintext, BAMBOO);
          assert.equal(
            stored.data.length,
            size + testCase.overhead(size),
            `stored size for ${size}`,
          );
          const read = await transformer.fromStorage(stored.data, BAMBOO);
          assert.deepEqual(Buffer.from(read.plaintext), plaintext, `plaintext of ${size} bytes`);
          assert.equal(read.stale, false, "a value read by its writer is fresh");
        }
      });

      it("never writes the same bytes twice", async () => {
        const transformer = testCase.make();
        const first = await transformer.toStorage(text(PANDAS), BAMBOO);
        const second = await transformer.toStorage(text(PANDAS), BAMBOO);
        assert.notDeepEqual(Buffer.from(first.data), Buffer.from(second.data), "fresh randomness");
      });

      it("refuses a flipped byte in every region with the generic decryption error", async () => {
        const transformer = testCase.make();
        const stored = Buffer.from((await transformer.toStorage(text(PANDAS), BAMBOO)).data);
        for (const [label, start, end] of testCase.regions(stored.length)) {
          for (const offset of [start, end - 1]) {
            const tampered = Buffer.from(stored);
            tampered[offset] = (tampered[offset] as number) ^ 0x01;
            await assert.rejects(
              transformer.fromStorage(tampered, BAMBOO),
              { code: "DECRYPTION_FAILED" },
              `flipped ${label} byte at ${offset}`,
            );
          }
        }
      });

      it("refuses a truncated value as malformed", async () => {
        const transformer = testCase.make();
        await assert.rejects(transformer.fromStorage(Buffer.alloc(5), BAMBOO), {
          code: "MALFORMED_CIPHERTEXT",
        });
      });

      it(
        testCase.authenticatesData
          ? "refuses the value under other authenticated data"
          : "ignores the authenticated data, as Kubernetes does",
        async () => {
          const transformer = testCase.make();
          const stored = await transformer.toStorage(text(PANDAS), BAMBOO);
          const elsewhere = transformer.fromStorage(stored.data, text("/registry/secrets/x"));
          if (testCase.authenticatesData)
            await assert.rejects(elsewhere, { code: "DECRYPTION_FAILED" });
          else assert.equal(Buffer.from((await elsewhere).plaintext).toString(), PANDAS);
        },
      );
    });
  }
});

describe("aescbc (unauthenticated, as in Kubernetes)", () => {
  const cbc = new AesCbcTransformer(key32, writer("aescbc"));
  const HERE = text("/registry/secrets/default/here");
  const ELSEWHERE = text("/registry/secrets/default/elsewhere");

  it("pads with PKCS#7, adding a whole block when the plaintext is block-aligned", async () => {
    for (const [size, expected] of [
      [0, 32],
      [15, 32],
      [16, 48],
      [17, 48],
    ] as const) {
      const stored = await cbc.toStorage(Buffer.alloc(size, 1), HERE);
      assert.equal(stored.data.length, expected, `IV + padded length for ${size} bytes`);
      assert.equal((await cbc.fromStorage(stored.data, HERE)).plaintext.length, size, "round trip");
    }
  });

  it("still decrypts under a different context: there is no MAC and no authenticated data", async () => {
    const stored = await cbc.toStorage(text(PANDAS), HERE);
    const read = await cbc.fromStorage(stored.data, ELSEWHERE);
    assert.equal(Buffer.from(read.plaintext).toString(), PANDAS);
  });

  it("rejects a value that is not whole blocks, and broken padding", async () => {
    const stored = Buffer.from((await cbc.toStorage(text(PANDAS), HERE)).data);
    await assert.rejects(cbc.fromStorage(stored.subarray(0, stored.length - 1), HERE), {
      code: "MALFORMED_CIPHERTEXT",
    });
    await assert.rejects(cbc.fromStorage(stored.subarray(0, 16), HERE), {
      code: "MALFORMED_CIPHERTEXT",
    });
    // Flipping the last byte of the second-to-last block flips the last plaintext byte: the
    // padding byte, which then no longer matches.
    const tampered = Buffer.from(stored);
    const index = tampered.length - 17;
    tampered[index] = (tampered[index] as number) ^ 0x20;
    await assert.rejects(cbc.fromStorage(tampered, HERE), { code: "DECRYPTION_FAILED" });
  });
});

describe("identity and prefix lists", () => {
  const identity = new IdentityTransformer();

  it("identity refuses data that looks encrypted", async () => {
    await assert.rejects(
      identity.fromStorage(text("k8s:enc:aescbc:v1:k:xxxx")),
      /tried to read encrypted data/,
    );
    assert.equal(
      Buffer.from((await identity.fromStorage(text("k8s:plain"))).plaintext).toString(),
      "k8s:plain",
    );
  });

  it("the first entry writes; later entries read and report stale; identity errors are skipped", async () => {
    await loadSecretbox();
    const key1 = new SecretboxTransformer(Buffer.alloc(32, 1), writer("secretbox", "key1"));
    const key2 = new SecretboxTransformer(Buffer.alloc(32, 2), writer("secretbox", "key2"));
    const list = (...entries: [string, Transformer][]) =>
      new PrefixTransformers(
        entries.map(([prefix, transformer]) => ({ prefix: text(prefix), transformer })),
      );
    const old = await list(["k8s:enc:secretbox:v1:", list(["key1:", key1])]).toStorage(
      text("v"),
      BAMBOO,
    );
    assert.ok(
      Buffer.from(old.data).toString("latin1").startsWith("k8s:enc:secretbox:v1:key1:"),
      "nested prefixes",
    );

    const rotated = list(
      ["", identity],
      ["k8s:enc:secretbox:v1:", list(["key2:", key2], ["key1:", key1])],
    );
    const read = await rotated.fromStorage(old.data, BAMBOO);
    assert.deepEqual(read.writer, { provider: "secretbox", keyId: "key1" });
    assert.equal(read.stale, true, "read by a later provider and a later key");
    const plain = await rotated.fromStorage(text("plaintext"), BAMBOO);
    assert.equal(plain.stale, false, "identity is first, so plaintext is current");
    await assert.rejects(
      rotated.fromStorage(text("k8s:enc:aesgcm:v1:k:zzzz"), BAMBOO),
      /tried to read encrypted data/,
      "only identity matched",
    );
    await assert.rejects(
      list(["k8s:enc:secretbox:v1:", list(["key2:", key2])]).fromStorage(text("other"), BAMBOO),
      /no matching prefix found/,
    );
    await assert.rejects(
      rotated.fromStorage(text("k8s:enc:secretbox:v1:key3:zzzz"), BAMBOO),
      /no matching prefix found/,
      "an unknown key name",
    );
  });

  it("nested lists write every prefix in front of the cipher's bytes, sync or not, whether the inner writer leaves room or is copied behind it", async () => {
    await loadSecretbox();
    // A writer without toStorageSyncAfter, as an application's own transformer: its bytes are
    // copied behind the prefixes instead.
    const reversing: Transformer = {
      toStorage: async (plaintext) => ({
        data: Uint8Array.from(plaintext).reverse(),
        writer: writer("custom"),
      }),
      toStorageSync: (plaintext) => ({
        data: Uint8Array.from(plaintext).reverse(),
        writer: writer("custom"),
      }),
      fromStorage: async (data) => ({
        plaintext: Uint8Array.from(data).reverse(),
        stale: false,
        writer: writer("custom"),
      }),
      currentWriter: () => writer("custom"),
    };
    const inner: [string, Transformer][] = [
      ["secretbox", new SecretboxTransformer(Buffer.alloc(32, 7), writer("secretbox"))],
      ["aesgcm", new AesGcmTransformer(Buffer.alloc(32, 7), writer("aesgcm"))],
      ["aescbc", new AesCbcTransformer(Buffer.alloc(32, 7), writer("aescbc"))],
      ["identity", identity],
      ["custom", reversing],
    ];
    for (const [name, transformer] of inner) {
      const nested = new PrefixTransformers([
        {
          prefix: text("outer:"),
          transformer: new PrefixTransformers([
            {
              prefix: text("middle:"),
              transformer: new PrefixTransformers([{ prefix: text("k:"), transformer }]),
            },
          ]),
        },
      ]);
      for (const plaintext of [text(""), text("v"), Buffer.alloc(5000, 0x61)]) {
        const viaSync = nested.toStorageSync(plaintext, BAMBOO);
        const viaPromise = await nested.toStorage(plaintext, BAMBOO);
        for (const stored of [viaSync, viaPromise]) {
          assert.ok(stored !== undefined, name);
          assert.equal(
            Buffer.from(stored.data.subarray(0, 15)).toString("latin1"),
            "outer:middle:k:",
            `${name}: every prefix in place`,
          );
          assert.equal(stored.data.length, (viaPromise as { data: Uint8Array }).data.length);
          assert.deepEqual(
            Buffer.from((await nested.fromStorage(stored.data, BAMBOO)).plaintext),
            Buffer.from(plaintext),
            `${name}: reads back`,
          );
        }
      }
    }
  });

  it("answers at once (the Sync methods) where every key it needs is in process, and says undefined where a plugin is needed", async () => {
    await loadSecretbox();
    const key1 = new SecretboxTransformer(Buffer.alloc(32, 1), writer("secretbox", "key1"));
    // A plugin-backed entry: only the promise-returning methods, as the kms envelopes.
    const plugin: Transformer = {
      toStorage: async (plaintext) => ({ data: plaintext, writer: writer("kms:v2:p", "1") }),
      fromStorage: async (data) => ({
        plaintext: data,
        stale: false,
        writer: writer("kms:v2:p", "1"),
      }),
      currentWriter: () => writer("kms:v2:p", "1"),
    };
    const entry = (prefix: string, transformer: Transformer) => ({
      prefix: text(prefix),
      transformer,
    });
    const secretboxFirst = new PrefixTransformers([
      entry("k8s:enc:secretbox:v1:", new PrefixTransformers([entry("key1:", key1)])),
      entry("k8s:enc:kms:v2:p:", plugin),
    ]);
    const stored = secretboxFirst.toStorageSync(text("v"), BAMBOO);
    assert.ok(stored !== undefined);
    assert.equal(
      Buffer.from(secretboxFirst.fromStorageSync(stored.data, BAMBOO)?.plaintext ?? []).toString(),
      "v",
    );
    assert.equal(secretboxFirst.fromStorageSync(text("k8s:enc:kms:v2:p:x"), BAMBOO), undefined);
    assert.equal(
      Buffer.from(
        (await secretboxFirst.fromStorage(text("k8s:enc:kms:v2:p:x"), BAMBOO)).plaintext,
      ).toString(),
      "x",
      "the promise path reads what the plugin entry wrote",
    );

    const pluginFirst = new PrefixTransformers([
      entry("k8s:enc:kms:v2:p:", plugin),
      entry("k8s:enc:secretbox:v1:", new PrefixTransformers([entry("key1:", key1)])),
    ]);
    assert.equal(
      pluginFirst.toStorageSync(text("v"), BAMBOO),
      undefined,
      "writing needs the plugin",
    );
    assert.equal(
      pluginFirst.fromStorageSync(stored.data, BAMBOO)?.stale,
      true,
      "a later entry read it",
    );
    assert.throws(
      () => pluginFirst.fromStorageSync(text("k8s:enc:secretbox:v1:key1:short"), BAMBOO),
      { code: "MALFORMED_CIPHERTEXT" },
    );
    assert.throws(
      () => pluginFirst.fromStorageSync(text("other"), BAMBOO),
      /no matching prefix found/,
    );
  });
});
