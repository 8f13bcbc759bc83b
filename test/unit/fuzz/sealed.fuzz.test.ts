import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { fieldContext } from "../../../src/crypto/contexts.js";
import { deriveWorkspaceKey } from "../../../src/crypto/derivation.js";
import { open, SEALED_MIN_BYTES, seal } from "../../../src/crypto/sealed.js";
import { loadSecretbox, SECRETBOX_NONCE_BYTES } from "../../../src/crypto/secretbox.js";
import { mutationOf, outcome, runs } from "./fuzz-support.js";

await loadSecretbox();

const workspaceKey = deriveWorkspaceKey(Buffer.alloc(32, 7), "tenant-a");
const otherWorkspaceKey = deriveWorkspaceKey(Buffer.alloc(32, 7), "tenant-b");
const context = fieldContext("users.obot.obot.ai", "email", "u-1");

const nonces = fc.uint8Array({
  minLength: SECRETBOX_NONCE_BYTES,
  maxLength: SECRETBOX_NONCE_BYTES,
});
const contexts = fc.uint8Array({ maxLength: 80 });
const plaintexts = fc.uint8Array({ maxLength: 300 });

describe("fuzz: sealed values (nonce || secretbox under an HKDF record key)", () => {
  it("open() refuses arbitrary bytes only with MalformedCiphertextError or DecryptionFailedError", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        const result = outcome(
          () => open(workspaceKey, context, bytes),
          ["MALFORMED_CIPHERTEXT", "DECRYPTION_FAILED"],
        );
        assert.equal(result.ok, false, "random bytes opened");
        assert.equal(
          result.ok || result.error.code,
          bytes.length < SEALED_MIN_BYTES ? "MALFORMED_CIPHERTEXT" : "DECRYPTION_FAILED",
        );
      }),
      runs(1000),
    );
  });

  it("seal() then open() returns the plaintext for every context, nonce and plaintext", () => {
    fc.assert(
      fc.property(contexts, plaintexts, nonces, (ctx, plaintext, nonce) => {
        const sealed = seal(workspaceKey, ctx, plaintext, nonce);
        assert.equal(sealed.length, SEALED_MIN_BYTES + plaintext.length);
        assert.deepEqual(Uint8Array.from(open(workspaceKey, ctx, sealed)), plaintext);
      }),
      runs(300),
    );
  });

  it("a sealed value opens under no other workspace key and no other context (one generic DecryptionFailedError)", () => {
    fc.assert(
      fc.property(contexts, contexts, plaintexts, nonces, (ctx, otherCtx, plaintext, nonce) => {
        const sealed = seal(workspaceKey, ctx, plaintext, nonce);
        const elsewhere = outcome(
          () => open(otherWorkspaceKey, ctx, sealed),
          ["DECRYPTION_FAILED"],
        );
        assert.equal(elsewhere.ok, false, "opened under another workspace key");
        const moved = outcome(() => open(workspaceKey, otherCtx, sealed), ["DECRYPTION_FAILED"]);
        assert.equal(moved.ok, Buffer.from(ctx).equals(otherCtx), "opened under another context");
      }),
      runs(300),
    );
  });

  it("a mutated sealed value (flip, truncate, extend, splice) never opens unless it is byte-identical", () => {
    const sealedValues = fc.tuple(plaintexts, nonces).map(([plaintext, nonce]) => ({
      plaintext,
      sealed: seal(workspaceKey, context, plaintext, nonce),
    }));
    fc.assert(
      fc.property(
        sealedValues.chain((value) =>
          mutationOf(value.sealed).map((mutant) => ({ ...value, mutant })),
        ),
        ({ plaintext, sealed, mutant }) => {
          const result = outcome(
            () => open(workspaceKey, context, mutant),
            ["MALFORMED_CIPHERTEXT", "DECRYPTION_FAILED"],
          );
          if (result.ok) {
            assert.deepEqual(mutant, sealed, "a changed sealed value opened");
            assert.deepEqual(Uint8Array.from(result.value), plaintext);
          }
        },
      ),
      runs(800),
    );
  });
});
