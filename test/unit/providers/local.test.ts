import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, test } from "node:test";
import {
  LocalProvider,
  MASTER_KEY_VARIABLE,
  PREVIOUS_KEYS_VARIABLE,
} from "../../../providers/local.js";
import { ProviderError, type ProviderErrorClass } from "../../../providers/types.js";
import { deriveKeyId } from "../../../src/crypto/derivation.js";
import { loadSecretbox } from "../../../src/crypto/secretbox.js";
import { KmsEnvelopeError } from "../../../src/errors.js";

await loadSecretbox();

const primary = randomBytes(32);
const older = randomBytes(32);
const oldest = randomBytes(32);

function environment(current: Uint8Array, ...previous: Uint8Array[]): NodeJS.ProcessEnv {
  return {
    [MASTER_KEY_VARIABLE]: Buffer.from(current).toString("base64"),
    ...(previous.length > 0 && {
      [PREVIOUS_KEYS_VARIABLE]: previous
        .map((key) => Buffer.from(key).toString("base64"))
        .join(","),
    }),
  };
}

function refused(code: string, names: string, value?: string) {
  return (error: unknown): boolean => {
    assert.ok(error instanceof KmsEnvelopeError);
    assert.equal(error.code, code);
    assert.ok(error.message.includes(names), `message names ${names}: ${error.message}`);
    if (value !== undefined && value.trim() !== "") {
      assert.ok(!error.message.includes(value.trim()), "the message never echoes the value");
    }
    return true;
  };
}

function providerError(errorClass: ProviderErrorClass) {
  return (error: unknown): boolean => {
    assert.ok(error instanceof ProviderError, `expected a ProviderError, got ${error}`);
    assert.equal(error.errorClass, errorClass);
    assert.equal(error.code, "PROVIDER_UNAVAILABLE");
    return true;
  };
}

describe("LocalProvider: reading the environment", () => {
  test("ENCRYPTION_MASTER_KEY is the primary and PREVIOUS entries follow in order", () => {
    const provider = new LocalProvider(environment(primary, older, oldest));
    const keys = provider.loadMasterKeys();
    assert.deepEqual(
      keys.map((key) => Buffer.from(key)),
      [primary, older, oldest],
    );
  });

  test("PREVIOUS tolerates spaces and empty entries between commas", () => {
    const provider = new LocalProvider({
      [MASTER_KEY_VARIABLE]: primary.toString("base64"),
      [PREVIOUS_KEYS_VARIABLE]: ` ${older.toString("base64")} ,, ${oldest.toString("base64")},`,
    });
    assert.equal(provider.loadMasterKeys().length, 3);
  });

  test("loadMasterKeys returns copies the caller may wipe", () => {
    const provider = new LocalProvider(environment(primary));
    const [first] = provider.loadMasterKeys() as [Uint8Array];
    first.fill(0);
    assert.deepEqual(Buffer.from(provider.loadMasterKeys()[0] ?? []), primary);
  });

  test("a missing ENCRYPTION_MASTER_KEY is MISSING_MASTER_KEY naming the variable", () => {
    assert.throws(
      () => new LocalProvider({}),
      refused("MISSING_MASTER_KEY", `${MASTER_KEY_VARIABLE} is not set`),
    );
  });

  test("an empty or blank ENCRYPTION_MASTER_KEY is MISSING_MASTER_KEY too", () => {
    for (const value of ["", "   ", "\n"]) {
      assert.throws(
        () => new LocalProvider({ [MASTER_KEY_VARIABLE]: value }),
        refused("MISSING_MASTER_KEY", MASTER_KEY_VARIABLE),
      );
    }
  });

  test("a non-base64 ENCRYPTION_MASTER_KEY is INVALID_MASTER_KEY and not echoed", () => {
    const value = "this-is-not-base64!!";
    assert.throws(
      () => new LocalProvider({ [MASTER_KEY_VARIABLE]: value }),
      refused("INVALID_MASTER_KEY", `${MASTER_KEY_VARIABLE} is not standard base64`, value),
    );
  });

  test("a wrong-length ENCRYPTION_MASTER_KEY is INVALID_MASTER_KEY and not echoed", () => {
    for (const length of [16, 31, 33, 48]) {
      const value = randomBytes(length).toString("base64");
      assert.throws(
        () => new LocalProvider({ [MASTER_KEY_VARIABLE]: value }),
        refused(
          "INVALID_MASTER_KEY",
          `${MASTER_KEY_VARIABLE} must be base64 of exactly 32 bytes`,
          value,
        ),
      );
    }
  });

  test("a bad ENCRYPTION_MASTER_KEY_PREVIOUS entry is INVALID_MASTER_KEY naming the entry", () => {
    const good = older.toString("base64");
    const short = randomBytes(20).toString("base64");
    assert.throws(
      () =>
        new LocalProvider({
          [MASTER_KEY_VARIABLE]: primary.toString("base64"),
          [PREVIOUS_KEYS_VARIABLE]: `${good},${short}`,
        }),
      refused("INVALID_MASTER_KEY", `${PREVIOUS_KEYS_VARIABLE} entry 2 must be base64`, short),
    );
    const garbage = "not base64 at all";
    assert.throws(
      () =>
        new LocalProvider({
          [MASTER_KEY_VARIABLE]: primary.toString("base64"),
          [PREVIOUS_KEYS_VARIABLE]: garbage,
        }),
      refused(
        "INVALID_MASTER_KEY",
        `${PREVIOUS_KEYS_VARIABLE} entry 1 is not standard base64`,
        garbage,
      ),
    );
  });

  test("describe names the provider and the variable, never the key", () => {
    const provider = new LocalProvider(environment(primary));
    assert.deepEqual(provider.describe(), {
      provider: "local",
      keyRef: `env:${MASTER_KEY_VARIABLE}`,
    });
  });

  test("checkHealth always resolves: nothing remote can revoke an environment key", async () => {
    await new LocalProvider(environment(primary)).checkHealth();
  });

  test("close may be called twice, and a closed provider refuses instead of using wiped keys", async () => {
    const provider = new LocalProvider(environment(primary, older));
    const wrapped = await provider.wrapKey(randomBytes(32), { keyId: "k" });
    await provider.close();
    await provider.close();
    assert.throws(() => provider.loadMasterKeys(), /the local provider is closed/);
    await assert.rejects(
      provider.wrapKey(randomBytes(32), { keyId: "k" }),
      /the local provider is closed/,
    );
    await assert.rejects(
      provider.unwrapKey(wrapped, { keyId: "k" }),
      /the local provider is closed/,
    );
  });
});

describe("LocalProvider: wrapping keys", () => {
  const material = randomBytes(32);
  const context = { keyId: deriveKeyId("local", material) };

  test("wrapKey/unwrapKey round-trip, and the wrapped form is not the key", async () => {
    const provider = new LocalProvider(environment(primary));
    const wrapped = await provider.wrapKey(material, context);
    assert.ok(!Buffer.from(wrapped).includes(material));
    assert.deepEqual(Buffer.from(await provider.unwrapKey(wrapped, context)), material);
  });

  test("a key wrapped under an earlier primary unwraps once that key is in PREVIOUS", async () => {
    const wrapped = await new LocalProvider(environment(older)).wrapKey(material, context);
    const rotated = new LocalProvider(environment(primary, older));
    assert.deepEqual(Buffer.from(await rotated.unwrapKey(wrapped, context)), material);
  });

  test("unwrapping with a tampered byte is a ProviderError of class corrupt", async () => {
    const provider = new LocalProvider(environment(primary));
    const wrapped = await provider.wrapKey(material, context);
    for (const index of [wrapped.length - 1, wrapped.length - 40]) {
      const tampered = Uint8Array.from(wrapped);
      tampered[index] = (tampered[index] as number) ^ 0x80;
      await assert.rejects(provider.unwrapKey(tampered, context), providerError("corrupt"));
    }
  });

  test("a malformed wrapped key is a ProviderError of class corrupt", async () => {
    const provider = new LocalProvider(environment(primary));
    for (const wrapped of [new Uint8Array(0), Uint8Array.of(0x09, 0, 0), randomBytes(80)]) {
      await assert.rejects(provider.unwrapKey(wrapped, context), providerError("corrupt"));
    }
  });

  test("unwrapping a key wrapped under a key no longer present is class user", async () => {
    const wrapped = await new LocalProvider(environment(oldest)).wrapKey(material, context);
    const provider = new LocalProvider(environment(primary, older));
    await assert.rejects(
      provider.unwrapKey(wrapped, context),
      (error: unknown) =>
        providerError("user")(error) &&
        (error as Error).message.includes(MASTER_KEY_VARIABLE) &&
        !(error as Error).message.includes(oldest.toString("base64")),
    );
  });

  test("a wrapped key is bound to its keyId: another WrapContext.keyId fails", async () => {
    const provider = new LocalProvider(environment(primary));
    const wrapped = await provider.wrapKey(material, context);
    const otherContext = { keyId: deriveKeyId("local", randomBytes(32)) };
    await assert.rejects(provider.unwrapKey(wrapped, otherContext), providerError("corrupt"));
  });
});
