import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, test } from "node:test";
import { FakeProvider } from "../../../providers/fake.js";
import { ProviderError, type ProviderErrorClass } from "../../../providers/types.js";
import { loadSecretbox } from "../../../src/crypto/secretbox.js";

await loadSecretbox();

async function outcome(promise: Promise<unknown>): Promise<"ok" | ProviderErrorClass> {
  try {
    await promise;
    return "ok";
  } catch (error) {
    assert.ok(error instanceof ProviderError);
    return error.errorClass;
  }
}

describe("FakeProvider", () => {
  test("answers ok by default and counts every call per operation", async () => {
    const fake = new FakeProvider();
    await fake.checkHealth();
    await fake.checkHealth();
    const wrapped = await fake.wrapKey(randomBytes(32), { keyId: "fake:a" });
    await fake.unwrapKey(wrapped, { keyId: "fake:a" });
    assert.deepEqual(fake.calls, { wrapKey: 1, unwrapKey: 1, checkHealth: 2 });
  });

  test("scripted outcomes apply in order, then the standing outcome", async () => {
    const fake = new FakeProvider().script("user", "ok", "throttled").setStanding("corrupt");
    const seen = [];
    for (let index = 0; index < 5; index += 1) seen.push(await outcome(fake.checkHealth()));
    assert.deepEqual(seen, ["user", "ok", "throttled", "corrupt", "corrupt"]);
  });

  test("the script is shared by every operation", async () => {
    const fake = new FakeProvider().script("user");
    await assert.rejects(fake.wrapKey(randomBytes(32), { keyId: "fake:a" }), ProviderError);
    await fake.checkHealth();
  });

  test("a scripted failure is a ProviderError with code PROVIDER_UNAVAILABLE", async () => {
    const fake = new FakeProvider().script("throttled");
    await assert.rejects(fake.checkHealth(), {
      name: "ProviderError",
      code: "PROVIDER_UNAVAILABLE",
      errorClass: "throttled",
      message: "fake: scripted throttled failure",
    });
  });

  test("wrapKey/unwrapKey round-trip; another keyId fails as corrupt", async () => {
    const fake = new FakeProvider();
    const key = randomBytes(32);
    const wrapped = await fake.wrapKey(key, { keyId: "fake:a" });
    assert.deepEqual(Buffer.from(await fake.unwrapKey(wrapped, { keyId: "fake:a" })), key);
    assert.equal(await outcome(fake.unwrapKey(wrapped, { keyId: "fake:b" })), "corrupt");
  });

  test("a delayed call is aborted by its signal as class other", async () => {
    const fake = new FakeProvider().setDelay(60_000);
    const controller = new AbortController();
    const pending = outcome(fake.checkHealth(controller.signal));
    setTimeout(() => controller.abort(), 10);
    assert.equal(await pending, "other");
  });

  test("loadMasterKeys returns copies of the configured keys", () => {
    const key = randomBytes(32);
    const fake = new FakeProvider({ masterKeys: [key] });
    const [loaded] = fake.loadMasterKeys() as [Uint8Array];
    assert.deepEqual(Buffer.from(loaded), key);
    loaded.fill(0);
    assert.deepEqual(Buffer.from(fake.loadMasterKeys()[0] ?? []), key);
  });

  test("describe names the scripted provider", () => {
    assert.deepEqual(new FakeProvider({ name: "fake2" }).describe(), {
      provider: "fake2",
      keyRef: "fake:scripted",
    });
  });
});
