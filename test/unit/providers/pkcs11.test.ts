import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { chmod, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { createProvider, name, Pkcs11Provider } from "../../../providers/pkcs11.js";
import { classifyPkcs11Error } from "../../../providers/pkcs11-errors.js";
import { loadProviderModule } from "../../../providers/registry.js";
import { ProviderError, type ProviderErrorClass } from "../../../providers/types.js";
import { KmsEnvelopeError } from "../../../src/errors.js";
import { type SoftHsm, startSoftHsm, USER_PIN } from "../../support/softhsm.js";

// Every provider here talks to a real SoftHSM2 token made for this process (test/support/softhsm.ts).

let hsm: SoftHsm;
const open: Pkcs11Provider[] = [];

function provider(keyRef: string, environment: NodeJS.ProcessEnv = {}): Pkcs11Provider {
  const instance = createProvider(keyRef, {
    timeoutMs: 5000,
    maxAttempts: 3,
    environment,
  });
  open.push(instance);
  return instance;
}

/** For assert.rejects: a ProviderError of `errorClass` whose one-line message matches. */
function failsAs(errorClass: ProviderErrorClass, message: RegExp) {
  return (error: unknown): boolean => {
    assert.ok(error instanceof ProviderError, `expected a ProviderError, got ${error}`);
    assert.equal(error.errorClass, errorClass, error.message);
    assert.equal(error.code, "PROVIDER_UNAVAILABLE");
    assert.match(error.message, message);
    assert.ok(!/[\n\r]/.test(error.message), `one line: ${error.message}`);
    assert.ok(!error.message.includes(USER_PIN), "the PIN never appears");
    return true;
  };
}

const CONTEXT = { keyId: "pkcs11:Xq3-LkT0Vv9mB1sZ" };

before(async () => {
  hsm = await startSoftHsm();
  await hsm.initToken("main");
  await hsm.generateKey("main", "kek");
  await hsm.generateKey("main", "other-kek");
  hsm.admin.generateKey("main", "no-encrypt", { encrypt: false, decrypt: true });
  hsm.admin.generateKey("main", "no-decrypt", { encrypt: true, decrypt: false });
  hsm.admin.generateKey("main", "aes-128", { encrypt: true, decrypt: true, bytes: 16 });
  await hsm.initToken("pins");
  await hsm.generateKey("pins", "kek");
  await hsm.initToken("restored");
  await hsm.generateKey("restored", "kek");
});

after(async () => {
  await Promise.allSettled(open.map((instance) => instance.close()));
  await hsm?.stop();
});

describe("pkcs11 provider on SoftHSM2", () => {
  test("wraps with AES-GCM on the token and unwraps to the same key; health is a round trip", async () => {
    const kek = provider(hsm.keyRef("main", "kek"));
    assert.equal(kek.name, name);
    assert.deepEqual(kek.describe(), { provider: "pkcs11", keyRef: hsm.keyRef("main", "kek") });
    const key = randomBytes(32);
    const first = await kek.wrapKey(key, CONTEXT);
    const second = await kek.wrapKey(key, CONTEXT);
    assert.equal(first.length, 61, "format byte, 12-byte IV, 32-byte ciphertext, 16-byte tag");
    assert.equal(first[0], 0x01);
    assert.notDeepEqual(first, second, "a fresh IV each time");
    assert.ok(!Buffer.from(first).includes(key));
    assert.deepEqual(Buffer.from(await kek.unwrapKey(first, CONTEXT)), key);
    assert.deepEqual(Buffer.from(await kek.unwrapKey(second, CONTEXT)), key);
    await kek.checkHealth();
    // Another instance (a restarted daemon) unwraps what this one wrapped.
    const again = provider(hsm.keyRef("main", "kek"));
    assert.deepEqual(Buffer.from(await again.unwrapKey(first, CONTEXT)), key);
  });

  test("a wrapped key opens only under its key id, with its key, undamaged: corrupt otherwise", async () => {
    const kek = provider(hsm.keyRef("main", "kek"));
    const other = provider(hsm.keyRef("main", "other-kek"));
    const wrapped = await kek.wrapKey(randomBytes(32), CONTEXT);
    await assert.rejects(
      kek.unwrapKey(wrapped, { keyId: "pkcs11:AAAAAAAAAAAAAAAA" }),
      failsAs(
        "corrupt",
        /^the wrapped key for pkcs11:AAAAAAAAAAAAAAAA failed authentication under key object "kek" on token "main": it was wrapped by another key or for another key id, or it is damaged; /,
      ),
    );
    await assert.rejects(
      other.unwrapKey(wrapped, CONTEXT),
      failsAs("corrupt", /failed authentication under key object "other-kek"/),
    );
    for (const index of [0, 5, 20, 60]) {
      const damaged = Buffer.from(wrapped);
      damaged[index] = (damaged[index] ?? 0) ^ 0x01;
      await assert.rejects(
        kek.unwrapKey(damaged, CONTEXT),
        failsAs("corrupt", /./),
        `byte ${index}`,
      );
    }
    await assert.rejects(
      kek.unwrapKey(wrapped.subarray(1), CONTEXT),
      failsAs(
        "corrupt",
        /^the wrapped key for pkcs11:Xq3-LkT0Vv9mB1sZ is not a pkcs11 wrapped key \(60 bytes, format \d+; expected 61 bytes, format 1\): restore the keyring entry from a backup$/,
      ),
    );
    await assert.rejects(kek.wrapKey(randomBytes(16), CONTEXT), (error: unknown) => {
      assert.ok(error instanceof KmsEnvelopeError && !(error instanceof ProviderError));
      assert.equal(error.code, "INVALID_MASTER_KEY");
      return true;
    });
  });

  test("wrong PIN: user, said once per PIN; a corrected PIN file is read at the next call", async () => {
    const pinFile = join(hsm.directory, "wrong-pin");
    await writeFile(pinFile, "not-the-pin\n", { mode: 0o600 });
    const keyRef = `pkcs11:token=pins;object=kek?module-path=${hsm.module}&pin-source=file:${pinFile}`;
    const kek = provider(keyRef);
    const wrongPin =
      /^token "pins" refused the PIN from file:\S+ \(wrong PIN, CKR_PIN_INCORRECT\): write the token's user PIN there; the same PIN is not tried again, so health checks cannot lock the token$/;
    await assert.rejects(kek.checkHealth(), failsAs("user", wrongPin));
    await assert.rejects(kek.checkHealth(), failsAs("user", wrongPin));
    await writeFile(pinFile, USER_PIN);
    await kek.checkHealth();
  });

  test("the PIN from an environment variable; a missing PIN, variable or safe file is user", async () => {
    const env = `pkcs11:token=main;object=kek?module-path=${hsm.module}&pin-source=env:KMSE_PIN`;
    await assert.rejects(
      provider(env, {}).checkHealth(),
      failsAs(
        "user",
        /^the PIN variable KMSE_PIN \(pin-source env:KMSE_PIN\) is not set: set it to the token's user PIN$/,
      ),
    );
    await provider(env, { KMSE_PIN: USER_PIN }).checkHealth();

    const exposed = join(hsm.directory, "exposed-pin");
    await writeFile(exposed, USER_PIN);
    await chmod(exposed, 0o644);
    await assert.rejects(
      provider(
        `pkcs11:token=main;object=kek?module-path=${hsm.module}&pin-source=file:${exposed}`,
      ).checkHealth(),
      failsAs(
        "user",
        /^the PIN file \S+ is readable by every user: chmod o-rwx \S+ \(in Kubernetes/,
      ),
    );
    await assert.rejects(
      provider(
        `pkcs11:token=main;object=kek?module-path=${hsm.module}&pin-source=file:${hsm.directory}/absent`,
      ).checkHealth(),
      failsAs("user", /^the PIN file \S+ cannot be read \(ENOENT\): create it/),
    );
    await assert.rejects(
      provider(`pkcs11:token=pins;object=kek?module-path=${hsm.module}`).checkHealth(),
      failsAs(
        "user",
        /^token "pins" requires a login and the key reference has no pin-source: add pin-source=file:/,
      ),
    );
  });

  test("object missing: user, naming the object and how to create it", async () => {
    await assert.rejects(
      provider(hsm.keyRef("main", "nope")).checkHealth(),
      failsAs(
        "user",
        /^key object "nope" is missing on token "main" \(object missing\): create it \(pkcs11-tool --module \S+ --token-label main --login --keygen --key-type AES:32 --label nope --sensitive --private\) or correct object=\/id= in the key reference$/,
      ),
    );
  });

  test("module not found or not loadable: user, naming module-path", async () => {
    await assert.rejects(
      provider(
        `pkcs11:token=main;object=kek?module-path=/nonexistent/libpkcs11.so&pin-source=file:${hsm.pinFile}`,
      ).wrapKey(randomBytes(32), CONTEXT),
      failsAs(
        "user",
        /^PKCS#11 module \/nonexistent\/libpkcs11.so not found: install it \(SoftHSM2: apt-get install softhsm2\) or correct module-path in the key reference$/,
      ),
    );
    await assert.rejects(
      provider(
        `pkcs11:token=main;object=kek?module-path=${hsm.pinFile}&pin-source=file:${hsm.pinFile}`,
      ).checkHealth(),
      failsAs("user", /^PKCS#11 module \S+ cannot be loaded \(.+\): give the path of a PKCS#11/),
    );
  });

  test("token absent: other, listing the tokens that are there", async () => {
    await assert.rejects(
      provider(hsm.keyRef("nowhere", "kek")).checkHealth(),
      failsAs(
        "other",
        /^token "nowhere" is not present in PKCS#11 module \S+ \(token absent; tokens present: "main", "pins", "restored"\): connect or restore the token, or correct the key reference$/,
      ),
    );
  });

  test("a key whose CKA_ENCRYPT or CKA_DECRYPT is false, or that is not AES-256: user", async () => {
    await assert.rejects(
      provider(hsm.keyRef("main", "no-encrypt")).wrapKey(randomBytes(32), CONTEXT),
      failsAs(
        "user",
        /^key object "no-encrypt" on token "main" has CKA_ENCRYPT false \(usage not allowed\): the pkcs11 provider wraps with C_Encrypt and unwraps with C_Decrypt, so use an AES key with CKA_ENCRYPT and CKA_DECRYPT true$/,
      ),
    );
    await assert.rejects(
      provider(hsm.keyRef("main", "no-decrypt")).checkHealth(),
      failsAs("user", /^key object "no-decrypt" on token "main" has CKA_DECRYPT false/),
    );
    await assert.rejects(
      provider(hsm.keyRef("main", "aes-128")).checkHealth(),
      failsAs(
        "user",
        /^key object "aes-128" on token "main" is an AES-128 key: master keys are wrapped by an AES-256 key/,
      ),
    );
  });

  test("usage turned off while serving: mechanism not permitted is user; turned back on, it recovers", async () => {
    const kek = provider(hsm.keyRef("main", "kek"));
    const wrapped = await kek.wrapKey(randomBytes(32), CONTEXT);
    hsm.admin.setUsage("main", "kek", false);
    try {
      await assert.rejects(
        kek.checkHealth(),
        failsAs(
          "user",
          /^key object "kek" on token "main" may not encrypt \(CKA_ENCRYPT is false\) \(CKR_KEY_FUNCTION_NOT_PERMITTED\)/,
        ),
      );
      await assert.rejects(
        kek.unwrapKey(wrapped, CONTEXT),
        failsAs("user", /may not decrypt \(CKA_DECRYPT is false\)/),
      );
    } finally {
      hsm.admin.setUsage("main", "kek", true);
    }
    await kek.checkHealth();
  });

  test("the module finalised under the provider: sessions, login and key are set up again", async () => {
    const failed: ProviderErrorClass[] = [];
    const kek = new Pkcs11Provider({
      keyRef: hsm.keyRef("main", "kek"),
      onAttemptFailed: (errorClass) => failed.push(errorClass),
    });
    open.push(kek);
    const key = randomBytes(32);
    const wrapped = await kek.wrapKey(key, CONTEXT);
    hsm.admin.finalize();
    assert.deepEqual(Buffer.from(await kek.unwrapKey(wrapped, CONTEXT)), key);
    assert.deepEqual(failed, ["other"], "one failed attempt (the stale session), then success");
    await kek.checkHealth();
  });

  test("token deleted, then restored from a backup: other while absent, then it recovers", async () => {
    const kek = provider(hsm.keyRef("restored", "kek"));
    const key = randomBytes(32);
    const wrapped = await kek.wrapKey(key, CONTEXT);
    const restore = await hsm.backup("restored");
    await hsm.deleteToken("restored");
    await assert.rejects(
      kek.checkHealth(),
      failsAs("other", /^token "restored" is not present in PKCS#11 module \S+ \(token absent;/),
    );
    await assert.rejects(
      kek.unwrapKey(wrapped, CONTEXT),
      failsAs("other", /^token "restored" is not present/),
    );
    await restore();
    await kek.checkHealth();
    assert.deepEqual(Buffer.from(await kek.unwrapKey(wrapped, CONTEXT)), key);
  });

  test("a hung token: other at the deadline, the event loop running meanwhile; then it recovers", async () => {
    const kek = new Pkcs11Provider({ keyRef: hsm.keyRef("main", "kek"), timeoutMs: 1000 });
    open.push(kek);
    const key = randomBytes(32);
    const wrapped = await kek.wrapKey(key, CONTEXT);
    const release = await hsm.stall("main", 10_000);
    let ticks = 0;
    const ticker = setInterval(() => {
      ticks += 1;
    }, 50);
    try {
      const started = performance.now();
      await assert.rejects(
        kek.unwrapKey(wrapped, CONTEXT),
        failsAs(
          "other",
          /^token "main" did not answer within 1000 ms: check the token and PKCS#11 module \S+ \(an HSM's network path, a busy or hung token\), or raise the provider timeout$/,
        ),
      );
      const elapsed = performance.now() - started;
      assert.ok(elapsed < 2500, `gave up after ${Math.round(elapsed)} ms`);
      // The module's calls run on their own thread: a hung one does not stop this one (about 20
      // ticks in the second; a blocked event loop would see none until the end).
      assert.ok(ticks >= 5, `the event loop ran ${ticks} times while the token hung`);
    } finally {
      clearInterval(ticker);
      release();
    }
    assert.deepEqual(Buffer.from(await kek.unwrapKey(wrapped, CONTEXT)), key);
  });

  test("a caller that gave up, and a closed provider, get a ProviderError at once", async () => {
    const kek = provider(hsm.keyRef("main", "kek"));
    const wrapped = await kek.wrapKey(randomBytes(32), CONTEXT);
    await assert.rejects(
      kek.unwrapKey(wrapped, CONTEXT, AbortSignal.abort()),
      failsAs("other", /^the pkcs11 call on token "main" was cancelled by the caller$/),
    );
    await kek.close();
    await kek.close();
    await assert.rejects(
      kek.unwrapKey(wrapped, CONTEXT),
      failsAs("other", /^the pkcs11 provider for token "main" is closed$/),
    );
  });

  test("the registry knows pkcs11 as a built-in provider; a bad reference fails at creation", async () => {
    const module = await loadProviderModule("pkcs11");
    assert.equal(module.name, "pkcs11");
    assert.throws(
      () =>
        module.createProvider(`pkcs11:token=main?module-path=${hsm.module}`, {
          timeoutMs: 1000,
          maxAttempts: 1,
          environment: {},
        }),
      (error: unknown) =>
        error instanceof KmsEnvelopeError &&
        error.code === "INVALID_CONFIG" &&
        /names no key object/.test(error.message),
    );
  });
});

describe("pkcs11 error classification", () => {
  const facts = {
    module: "/usr/lib/hsm.so",
    token: 'token "kmse"',
    object: 'key object "kek"',
    pinSource: "file:/etc/kmse/pin",
  };
  const cases: [string, "encrypt" | "decrypt" | "login", ProviderErrorClass, boolean, RegExp][] = [
    [
      "CKR_MECHANISM_INVALID",
      "encrypt",
      "user",
      false,
      /^token "kmse" does not allow CKM_AES_GCM with a 96-bit IV, additional authenticated data and a 128-bit tag for key object "kek" \(mechanism not allowed, CKR_MECHANISM_INVALID\): allow that mechanism/,
    ],
    ["CKR_MECHANISM_PARAM_INVALID", "decrypt", "user", false, /mechanism not allowed/],
    ["CKR_PIN_LOCKED", "login", "user", false, /^the user PIN of token "kmse" is locked/],
    ["CKR_PIN_EXPIRED", "login", "user", false, /has expired/],
    ["CKR_TOKEN_NOT_PRESENT", "encrypt", "other", true, /is not present in PKCS#11 module/],
    ["CKR_DEVICE_REMOVED", "decrypt", "other", true, /is not present/],
    ["CKR_SESSION_HANDLE_INVALID", "decrypt", "other", true, /the provider reconnects/],
    ["CKR_CRYPTOKI_NOT_INITIALIZED", "encrypt", "other", true, /the provider reconnects/],
    ["CKR_KEY_TYPE_INCONSISTENT", "encrypt", "user", false, /name an AES-256 secret key/],
    ["CKR_SESSION_COUNT", "encrypt", "other", false, /no free session/],
  ];
  for (const [ckr, step, errorClass, stale, message] of cases) {
    test(`${ckr} during ${step} is ${errorClass}${stale ? ", and the connection is set up again" : ""}`, () => {
      const failure = classifyPkcs11Error(new Error(`${ckr}:${0}`), step, facts);
      assert.equal(failure.error.errorClass, errorClass);
      assert.equal(failure.stale, stale);
      assert.match(failure.error.message, message);
      assert.ok(!failure.error.message.includes("\n"));
    });
  }

  test("anything that is not a PKCS#11 code is other, with its first line", () => {
    const failure = classifyPkcs11Error(new Error("boom\nstack"), "encrypt", facts);
    assert.equal(failure.error.errorClass, "other");
    assert.equal(
      failure.error.message,
      'PKCS#11 wrap (C_Encrypt) on token "kmse" failed (boom) in module /usr/lib/hsm.so',
    );
  });
});
