import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { instrument } from "../../providers/instrumented.js";
import { ProviderError } from "../../providers/types.js";
import { ConfigError, KmsEnvelopeError } from "../../src/errors.js";

describe("ConfigError", () => {
  test("is INVALID_CONFIG and names the setting, the problem and the remedy in one line", () => {
    const error = new ConfigError("--socket", "is empty", "give a path such as /run/kms.sock");
    assert.ok(error instanceof KmsEnvelopeError);
    assert.equal(error.code, "INVALID_CONFIG");
    assert.equal(error.name, "ConfigError");
    assert.equal(error.setting, "--socket");
    assert.equal(error.message, "--socket: is empty (give a path such as /run/kms.sock)");
  });

  test("keeps the cause", () => {
    const cause = new Error("ENOENT");
    assert.equal(
      new ConfigError("--keyring", "cannot be read", "check it", { cause }).cause,
      cause,
    );
  });
});

describe("errors made by another copy of the package", () => {
  // A provider module that resolved its own kms-envelope loads these modules a second time:
  // the same files under other URLs are other module instances, with other classes.
  const otherCopy = async () => ({
    errors: (await import(
      new URL("../../src/errors.ts?copy=provider", import.meta.url).href
    )) as typeof import("../../src/errors.js"),
    providers: (await import(
      new URL("../../providers/types.ts?copy=provider", import.meta.url).href
    )) as typeof import("../../providers/types.js"),
  });

  test("are still instances of their classes here, and only of those", async () => {
    const { errors, providers } = await otherCopy();
    assert.notEqual(providers.ProviderError, ProviderError, "a distinct copy was loaded");
    const revoked = new providers.ProviderError("user", "key disabled");
    assert.ok(revoked instanceof ProviderError);
    assert.ok(revoked instanceof KmsEnvelopeError);
    assert.ok(!(revoked instanceof ConfigError));
    const config = new errors.ConfigError("--socket", "is empty", "give a path");
    assert.ok(config instanceof ConfigError && config instanceof KmsEnvelopeError);
    assert.ok(!(config instanceof ProviderError));
    assert.ok(!(new Error("plain") instanceof KmsEnvelopeError));
    assert.ok(!((null as unknown as object) instanceof KmsEnvelopeError));
  });

  test("keep their class through the provider instrumentation, so a revoked key stays `user`", async () => {
    const { providers } = await otherCopy();
    const seen: string[] = [];
    const failing = instrument(
      {
        name: "copied",
        describe: () => ({ provider: "copied", keyRef: "k" }),
        wrapKey: async () => new Uint8Array(),
        unwrapKey: async () => new Uint8Array(),
        checkHealth: async () => {
          throw new providers.ProviderError("user", "key disabled");
        },
        close: async () => {},
      },
      (_provider, _operation, result) => seen.push(result),
    );
    await assert.rejects(failing.checkHealth(), (error: unknown) => {
      assert.ok(error instanceof ProviderError);
      assert.equal(error.errorClass, "user");
      return true;
    });
    assert.deepEqual(seen, ["user"]);
  });
});
