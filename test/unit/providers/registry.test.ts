import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { loadProviderModule, ProviderRegistry } from "../../../providers/registry.js";
import { KmsEnvelopeError } from "../../../src/errors.js";
import { PACKAGE_ROOT } from "../../../src/package-info.js";

const options = {
  timeoutMs: 1000,
  maxAttempts: 1,
  environment: { CUSTOM_PROVIDER_KEK: Buffer.alloc(32, 1).toString("base64") },
};
const invalid = (detail: RegExp) => (error: unknown) =>
  error instanceof KmsEnvelopeError &&
  error.code === "INVALID_CONFIG" &&
  detail.test(error.message);

describe("provider registry", () => {
  let directory: string;
  before(async () => {
    directory = await mkdtemp(join(tmpdir(), "registry-"));
  });
  after(() => rm(directory, { recursive: true, force: true }));

  test("a custom module by path is loaded, checked and instantiated once per key reference", async () => {
    const registry = new ProviderRegistry(options);
    assert.equal(
      await registry.register(join(PACKAGE_ROOT, "test/fixtures/custom-provider.ts")),
      "custom",
    );
    const first = await registry.provider("custom", "custom://a");
    assert.equal(await registry.provider("custom", "custom://a"), first);
    assert.notEqual(await registry.provider("custom", "custom://b"), first);
    assert.deepEqual(first.describe(), { provider: "custom", keyRef: "custom://a" });
    await registry.close();
  });

  test("a module without name/createProvider, or that cannot load, is refused with what to export", async () => {
    const empty = join(directory, "empty.mjs");
    await writeFile(empty, "export const unrelated = 1;\n");
    await assert.rejects(
      loadProviderModule(empty),
      invalid(
        /\(export `name` \(lowercase, e\.g\. "my-hsm"\) and `createProvider\(keyRef, options\)`\)$/,
      ),
    );
    await assert.rejects(
      loadProviderModule(join(directory, "missing.mjs")),
      invalid(
        /^provider ".*missing\.mjs": cannot be loaded: .*\(give one of local, aws, azure, gcp,/,
      ),
    );
  });

  test("an instance that does not implement the interface is refused naming what is missing", async () => {
    const partial = join(directory, "partial.mjs");
    await writeFile(
      partial,
      'export const name = "partial";\nexport function createProvider() { return { name: "partial", describe() {}, wrapKey() {} }; }\n',
    );
    const registry = new ProviderRegistry(options);
    await registry.register(partial);
    await assert.rejects(
      registry.provider("partial", "x"),
      invalid(
        /^provider partial: does not implement the custody interface: missing unwrapKey, checkHealth, close/,
      ),
    );
  });

  test("a provider's failed attempts reach observeAttempt under the provider's name", async () => {
    const flaky = join(directory, "flaky.mjs");
    await writeFile(
      flaky,
      [
        'export const name = "flaky";',
        "export function createProvider(keyRef, options) {",
        "  return {",
        '    name: "flaky",',
        '    describe: () => ({ provider: "flaky", keyRef }),',
        '    async wrapKey(key) { options.onAttemptFailed("throttled"); return key; },',
        "    async unwrapKey(wrapped) { return wrapped; },",
        "    async checkHealth() {},",
        "    async close() {},",
        "  };",
        "}",
        "",
      ].join("\n"),
    );
    const seen: [string, string][] = [];
    const registry = new ProviderRegistry({
      ...options,
      observeAttempt: (provider, errorClass) => seen.push([provider, errorClass]),
    });
    await registry.register(flaky);
    await (await registry.provider("flaky", "x")).wrapKey(new Uint8Array(32), { keyId: "k" });
    assert.deepEqual(seen, [["flaky", "throttled"]]);
    await registry.close();
    // Without an observer the callback is still there, and does nothing.
    const unobserved = new ProviderRegistry(options);
    await unobserved.register(flaky);
    await (await unobserved.provider("flaky", "x")).wrapKey(new Uint8Array(32), { keyId: "k" });
    await unobserved.close();
  });

  test("a keyring naming an unknown provider says to pass --provider-module", async () => {
    await assert.rejects(
      new ProviderRegistry(options).provider("my-hsm", "x"),
      invalid(/^provider "my-hsm": is not built in.* \(pass --provider-module with its module\)$/),
    );
  });

  test("the local provider accepts only its environment key reference", async () => {
    const registry = new ProviderRegistry({
      ...options,
      environment: { ENCRYPTION_MASTER_KEY: Buffer.alloc(32, 2).toString("base64") },
    });
    assert.equal((await registry.provider("local", "env:ENCRYPTION_MASTER_KEY")).name, "local");
    await assert.rejects(
      registry.provider("local", "file:/etc/key"),
      invalid(
        /^local keyRef: "file:\/etc\/key" is not the local provider's key reference \(give env:ENCRYPTION_MASTER_KEY/,
      ),
    );
    await registry.close();
  });
});
