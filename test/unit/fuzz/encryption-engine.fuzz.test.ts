import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import fc from "fast-check";
import { parseEncryptionConfiguration } from "../../../src/engine/config/encryption-configuration.js";
import { EncryptionEngine } from "../../../src/engine/encryption-engine.js";
import type { Read } from "../../../src/engine/transformers/transformer.js";
import { Base64KmsPlugin } from "../../fixtures/base64-kms-plugin.js";
import { mutate, mutations, protobufMessage, runs, settle } from "./fuzz-support.js";

const secret = (size: number, fill: number) => Buffer.alloc(size, fill).toString("base64");
const AESGCM = `{ aesgcm: { keys: [{ name: k1, secret: "${secret(16, 1)}" }, { name: k2, secret: "${secret(32, 2)}" }] } }`;
const AESCBC = `{ aescbc: { keys: [{ name: c1, secret: "${secret(32, 3)}" }] } }`;
const SECRETBOX = `{ secretbox: { keys: [{ name: s1, secret: "${secret(32, 4)}" }] } }`;
const IDENTITY = "{ identity: {} }";
const LOCAL = [AESGCM, AESCBC, SECRETBOX, IDENTITY];

/** Each resource is written by one provider; `secrets` lists every provider, so it reads all. */
const WRITERS = {
  secrets: "kms:v2",
  "by-kms-v1": "kms:v1",
  "by-aesgcm": "aesgcm",
  "by-aescbc": "aescbc",
  "by-secretbox": "secretbox",
  "by-identity": "identity",
} as const;
type Resource = keyof typeof WRITERS;
const RESOURCES = Object.keys(WRITERS) as Resource[];

const PREFIXES = [
  "k8s:enc:aesgcm:v1:k1:",
  "k8s:enc:aesgcm:v1:k2:",
  "k8s:enc:aesgcm:v1:unknown:",
  "k8s:enc:aescbc:v1:c1:",
  "k8s:enc:secretbox:v1:s1:",
  "k8s:enc:kms:v2:p2:",
  "k8s:enc:kms:v1:p1:",
  "k8s:enc:kms:v2:other:",
  "k8s:enc:",
  "k8s:enc:aesgcm:v1:",
].map((prefix) => Buffer.from(prefix));

let directory: string;
let plugin: Base64KmsPlugin;
let engine: EncryptionEngine;

before(async () => {
  directory = await mkdtemp(join(tmpdir(), "kmse-fuzz-"));
  const socket = join(directory, "kms.sock");
  plugin = await Base64KmsPlugin.start(socket);
  const kms = (version: "v1" | "v2") =>
    `{ kms: { apiVersion: ${version}, name: p${version.slice(1)}, endpoint: "unix://${socket}", timeout: 2s } }`;
  const entry = (resource: string, providers: string[]) =>
    `  - resources: [${resource}]\n    providers: [${providers.join(", ")}]\n`;
  engine = await EncryptionEngine.start(
    parseEncryptionConfiguration(
      "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n" +
        entry("secrets", [kms("v2"), kms("v1"), ...LOCAL]) +
        entry("by-kms-v1", [kms("v1"), ...LOCAL]) +
        entry("by-aesgcm", LOCAL) +
        entry("by-aescbc", [AESCBC, AESGCM, SECRETBOX, IDENTITY]) +
        entry("by-secretbox", [SECRETBOX, AESGCM, AESCBC, IDENTITY]) +
        entry("by-identity", [IDENTITY, AESGCM, AESCBC, SECRETBOX]),
      { allowKmsV1: true },
    ),
    {
      kmsV2Timing: { healthyPollMs: 3_600_000, unhealthyPollMs: 3_600_000, writeTtlMs: 3_600_000 },
    },
  );
  assert.deepEqual(
    engine.health().map((provider) => provider.ok),
    [true, true],
  );
});

after(async () => {
  engine.close();
  await plugin.stop();
  await rm(directory, { recursive: true, force: true });
});

// Stored values: random, behind every provider's prefix, and kms v2 objects in protobuf form.
const storedBytes = fc.oneof(
  fc.uint8Array({ maxLength: 160 }),
  fc
    .tuple(fc.constantFrom(...PREFIXES), fc.uint8Array({ maxLength: 120 }))
    .map(([prefix, rest]) => Uint8Array.from(Buffer.concat([prefix, rest]))),
  protobufMessage.map((message) =>
    Uint8Array.from(Buffer.concat([Buffer.from("k8s:enc:kms:v2:p2:"), message])),
  ),
);
const authenticatedData = fc.oneof(
  fc.constant(Buffer.from("/registry/secrets/default/db")),
  fc.uint8Array({ maxLength: 40 }),
);

const READ_FAILURES = ["MALFORMED_CIPHERTEXT", "DECRYPTION_FAILED", "KMS_PLUGIN_FAILED"] as const;

/** A read that returned other bytes than were written came through a path without a MAC. */
function unauthenticated(read: Read): boolean {
  const { provider } = read.writer;
  return (
    provider === "identity" ||
    provider === "aescbc" ||
    // kms v1 falls back to AES-CBC for values written before Kubernetes 1.25.
    (provider.startsWith("kms:v1:") && read.stale)
  );
}

describe("fuzz: the encryption engine's read path (identity, aescbc, aesgcm, secretbox, kms v1 and v2)", () => {
  it("arbitrary stored bytes read through every resource's provider list fail only with typed errors", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...RESOURCES),
        storedBytes,
        authenticatedData,
        async (resource, stored, aad) => {
          const read = await settle(
            () => engine.decrypt(resource, stored, aad),
            [...READ_FAILURES],
          );
          if (read.ok && !unauthenticated(read.value)) {
            assert.fail(`random bytes authenticated as ${read.value.writer.provider}`);
          }
        },
      ),
      runs(400),
    );
  });

  it("a mutated value of each provider reads back its own plaintext or fails with a typed error, unless no MAC covers it", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...RESOURCES),
        fc.constantFrom(...RESOURCES),
        fc.uint8Array({ maxLength: 64 }),
        authenticatedData,
        mutations,
        async (writer, reader, plaintext, aad, mutation) => {
          const { data } = await engine.encrypt(writer, plaintext, aad);
          const mutant = mutate(data, mutation);
          const read = await settle(() => engine.decrypt(reader, mutant, aad), [...READ_FAILURES]);
          if (read.ok && !unauthenticated(read.value)) {
            assert.deepEqual(Uint8Array.from(read.value.plaintext), plaintext);
          }
        },
      ),
      runs(400),
    );
  });

  it("every provider's values round-trip through the reader that lists it, under the same authenticated data only", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...RESOURCES),
        fc.uint8Array({ maxLength: 200 }),
        authenticatedData,
        fc.uint8Array({ maxLength: 40 }),
        async (resource, plaintext, aad, otherAad) => {
          const stored = await engine.encrypt(resource, plaintext, aad);
          assert.equal(stored.writer.provider.split(":").slice(0, 2).join(":"), WRITERS[resource]);
          for (const reader of new Set<Resource>([resource, "secrets"])) {
            const read = await engine.decrypt(reader, stored.data, aad);
            assert.deepEqual(Uint8Array.from(read.plaintext), plaintext);
            assert.equal(read.stale, reader !== resource);
          }
          const moved = await settle(
            () => engine.decrypt(resource, stored.data, otherAad),
            [...READ_FAILURES],
          );
          // aescbc and secretbox ignore the authenticated data, as in Kubernetes.
          const bound = ["aesgcm", "kms:v1", "kms:v2"].includes(WRITERS[resource]);
          if (bound && !Buffer.from(aad).equals(otherAad)) assert.equal(moved.ok, false);
        },
      ),
      runs(200),
    );
  });
});
