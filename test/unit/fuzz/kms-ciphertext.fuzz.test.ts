import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { KMS_V1_CONTEXT, KMS_V2_CONTEXT } from "../../../src/crypto/contexts.js";
import {
  decodeKmsCiphertext,
  encodeKmsCiphertext,
  KMS_CIPHERTEXT_FORMAT,
} from "../../../src/crypto/kms-ciphertext.js";
import { SEALED_MIN_BYTES, seal } from "../../../src/crypto/sealed.js";
import { loadSecretbox } from "../../../src/crypto/secretbox.js";
import type { ErrorCode } from "../../../src/errors.js";
import { HealthMonitor } from "../../../src/keys/health-monitor.js";
import { MasterKeySet } from "../../../src/keys/master-key-set.js";
import { type KmsApi, SealingService } from "../../../src/keys/sealing-service.js";
import { mutationOf, outcome, runs } from "./fuzz-support.js";

await loadSecretbox();

const masterKey = (fill: number) =>
  Uint8Array.from({ length: 32 }, (_, i) => (fill * 31 + i) & 0xff);
// Two versions, so a ciphertext re-labelled with the other key id reaches open() and fails there.
const keys = MasterKeySet.of("local", [masterKey(1), masterKey(2)]);
const [primaryKeyId, secondKeyId] = keys.keyIds as [string, string];
const WORKSPACE = "kubernetes";
const CONTEXTS: Record<KmsApi, Uint8Array> = { v1: KMS_V1_CONTEXT, v2: KMS_V2_CONTEXT };
const DECRYPT_FAILURES: ErrorCode[] = [
  "MALFORMED_CIPHERTEXT",
  "UNKNOWN_KEY_ID",
  "DECRYPTION_FAILED",
];
const envelope = new SealingService({
  keys,
  kmsWorkspace: WORKSPACE,
  health: new HealthMonitor({
    check: async () => undefined,
    intervalMs: 60_000,
    timeoutMs: 1_000,
    gracePeriodMs: 60_000,
  }),
});

// Bytes that start like a KMS ciphertext reach the length prefix and key id checks.
const kmsShapedBytes = fc.oneof(
  fc.uint8Array({ maxLength: 200 }),
  fc
    .tuple(fc.integer({ min: 0, max: 0xffff }), fc.uint8Array({ maxLength: 200 }))
    .map(([length, rest]) =>
      Uint8Array.from([KMS_CIPHERTEXT_FORMAT, length >> 8, length & 0xff, ...rest]),
    ),
  fc
    .tuple(
      fc.constantFrom(primaryKeyId, secondKeyId, "", "local:", "x"),
      fc.uint8Array({ maxLength: 120 }),
    )
    .map(([keyId, sealed]) => encodeKmsCiphertext(keyId, sealed)),
);

const api = fc.constantFrom<KmsApi>("v1", "v2");
const nonces = fc.uint8Array({ minLength: 24, maxLength: 24 });

describe("fuzz: KMS ciphertext (0x01 || lp(key id) || sealed)", () => {
  it("arbitrary bytes never escape decodeKmsCiphertext as anything but MalformedCiphertextError", () => {
    fc.assert(
      fc.property(kmsShapedBytes, (bytes) => {
        const result = outcome(() => decodeKmsCiphertext(bytes), ["MALFORMED_CIPHERTEXT"]);
        if (result.ok) {
          assert.ok(result.value.keyId.length > 0);
          assert.ok(result.value.sealed.length >= SEALED_MIN_BYTES);
        }
      }),
      runs(2000),
    );
  });

  it("decodeKmsCiphertext inverts encodeKmsCiphertext for every key id and sealed part it accepts", () => {
    fc.assert(
      fc.property(
        fc.string({ unit: "binary", minLength: 1, maxLength: 64 }),
        fc.uint8Array({ minLength: SEALED_MIN_BYTES, maxLength: 200 }),
        (keyId, sealed) => {
          const decoded = decodeKmsCiphertext(encodeKmsCiphertext(keyId, sealed));
          assert.equal(decoded.keyId, keyId);
          assert.deepEqual(Uint8Array.from(decoded.sealed), sealed);
        },
      ),
      runs(500),
    );
  });

  it("SealingService.decryptKms refuses arbitrary bytes with a typed error (malformed, unknown key id or decryption failed)", () => {
    fc.assert(
      fc.property(api, kmsShapedBytes, (which, bytes) => {
        const result = outcome(() => envelope.decryptKms(which, bytes), DECRYPT_FAILURES);
        assert.equal(result.ok, false, "random bytes opened");
      }),
      runs(1000),
    );
  });

  it("a mutated KMS ciphertext (flip, truncate, extend, splice) is refused with a typed error unless it is byte-identical", () => {
    // Sealed with a generated nonce, not SealingService.encryptKms, so a seed replays the same bytes.
    const ciphertexts = fc
      .tuple(api, fc.uint8Array({ maxLength: 64 }), nonces)
      .map(([which, plaintext, nonce]) => ({
        which,
        plaintext,
        ciphertext: encodeKmsCiphertext(
          primaryKeyId,
          seal(keys.primary.workspaceKey(WORKSPACE), CONTEXTS[which], plaintext, nonce),
        ),
      }));
    fc.assert(
      fc.property(
        ciphertexts.chain((value) =>
          mutationOf(value.ciphertext).map((mutant) => ({ ...value, mutant })),
        ),
        ({ which, plaintext, ciphertext, mutant }) => {
          const opened = outcome(() => envelope.decryptKms(which, mutant), DECRYPT_FAILURES);
          if (opened.ok) {
            assert.deepEqual(mutant, ciphertext, "a changed ciphertext opened");
            assert.deepEqual(Uint8Array.from(opened.value), plaintext);
          }
        },
      ),
      runs(600),
    );
  });

  it("valid KMS ciphertexts of every plaintext round-trip under both APIs, and the v2 key_id check refuses any other key id", () => {
    fc.assert(
      fc.property(
        api,
        fc.uint8Array({ maxLength: 512 }),
        fc.string({ maxLength: 40 }),
        (which, plaintext, claimedKeyId) => {
          const { ciphertext, keyId } = envelope.encryptKms(which, plaintext);
          assert.equal(keyId, primaryKeyId);
          assert.deepEqual(Uint8Array.from(envelope.decryptKms(which, ciphertext)), plaintext);
          const claimed = outcome(
            () => envelope.decryptKms(which, ciphertext, claimedKeyId),
            ["KEY_ID_MISMATCH"],
          );
          assert.equal(claimed.ok, claimedKeyId === keyId);
          const other: KmsApi = which === "v1" ? "v2" : "v1";
          const crossed = outcome(() => envelope.decryptKms(other, ciphertext), DECRYPT_FAILURES);
          assert.equal(crossed.ok, false, "a ciphertext of one API opened under the other");
        },
      ),
      runs(300),
    );
  });
});
