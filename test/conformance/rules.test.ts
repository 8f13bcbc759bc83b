import assert from "node:assert/strict";
import { createHmac, randomBytes } from "node:crypto";
import { describe, test } from "node:test";
import {
  type CustodyProvider,
  ProviderError,
  type ProviderKeyDescription,
} from "../../providers/types.js";
import { percentile } from "../../src/conformance/plugin/index.js";
import { pluginAddress } from "../../src/conformance/plugin-endpoint.js";
import { runProviderConformance } from "../../src/conformance/provider/index.js";
import { fqdnProblem } from "../../src/engine/kms/kms-v2-rules.js";
import { KmsEnvelopeError } from "../../src/errors.js";

describe("annotation keys (apimachinery IsFullyQualifiedDomainName)", () => {
  test("accepts what kube-apiserver accepts", () => {
    for (const key of [
      "local-kek.kms.kubernetes.io",
      "version.azure.akv.io",
      "a.b",
      "a.b.",
      `${"a".repeat(63)}.io`,
      "1.2.3",
    ]) {
      assert.equal(fqdnProblem(key), undefined, `${key} should be valid`);
    }
  });

  test("refuses what kube-apiserver refuses, saying why", () => {
    const cases: [string, RegExp][] = [
      ["", /empty/],
      ["nodots", /two dot-separated labels/],
      ["Upper.case.io", /DNS-1123/],
      ["under_score.io", /DNS-1123/],
      ["-lead.io", /DNS-1123/],
      ["trail-.io", /DNS-1123/],
      ["a..b", /DNS-1123/],
      [`${"a".repeat(64)}.io`, /64-character label/],
      [`${"a.".repeat(127)}ab`, /at most 253/],
    ];
    for (const [key, reason] of cases) {
      assert.match(fqdnProblem(key) ?? "valid", reason, `${JSON.stringify(key)}`);
    }
  });
});

describe("plugin endpoints", () => {
  test("unix:///path, unix:///@abstract and bare paths", () => {
    assert.equal(pluginAddress("unix:///run/kms.sock"), "unix:/run/kms.sock");
    assert.equal(pluginAddress("unix:///@kms"), "unix-abstract:kms");
    assert.equal(pluginAddress("/run/kms.sock"), "unix:/run/kms.sock");
  });

  test("other schemes and relative paths are refused with advice", () => {
    for (const endpoint of ["tcp://127.0.0.1:80", "unix://", "kms.sock", "unix://relative.sock"]) {
      assert.throws(
        () => pluginAddress(endpoint),
        (error: unknown) =>
          error instanceof KmsEnvelopeError &&
          error.code === "INVALID_CONFIG" &&
          /unix:\/\/\//.test(error.message),
        endpoint,
      );
    }
  });
});

test("percentiles are nearest-rank", () => {
  const samples = Array.from({ length: 100 }, (_, index) => index + 1);
  assert.equal(percentile(samples, 0.5), 50);
  assert.equal(percentile(samples, 0.99), 99);
  assert.equal(percentile([7], 0.99), 7);
  assert.ok(Number.isNaN(percentile([], 0.5)), "no samples, no percentile");
});

/**
 * A provider with the mistakes the rules exist to catch: it names the unwrapped key in an
 * error, calls every refusal "other", prints the key, ignores the caller's abort signal,
 * describes a different key each time and reports healthy while revoked.
 */
class SloppyProvider implements CustodyProvider {
  readonly name = "sloppy";
  readonly #secret = randomBytes(32);
  #describes = 0;
  static revoked = false;
  static delayMs = 0;

  describe(): ProviderKeyDescription {
    this.#describes += 1;
    return { provider: this.name, keyRef: `sloppy:${this.#describes}` };
  }

  async wrapKey(key: Uint8Array): Promise<Uint8Array> {
    console.log(`sloppy: wrapping ${Buffer.from(key).toString("hex")}`);
    return Buffer.concat([this.#mask(key), this.#tag(key)]);
  }

  async unwrapKey(wrapped: Uint8Array): Promise<Uint8Array> {
    if (SloppyProvider.delayMs > 0)
      await new Promise((wake) => setTimeout(wake, SloppyProvider.delayMs));
    if (SloppyProvider.revoked) throw new ProviderError("user", "sloppy: revoked");
    const bytes = Buffer.from(wrapped);
    const key = this.#mask(bytes.subarray(0, Math.max(0, bytes.length - 8)));
    if (!this.#tag(key).equals(bytes.subarray(bytes.length - 8))) {
      throw new ProviderError("other", `sloppy: checksum mismatch for key ${key.toString("hex")}`);
    }
    return key;
  }

  async checkHealth(): Promise<void> {}

  async close(): Promise<void> {}

  #mask(bytes: Uint8Array): Buffer {
    const pad = createHmac("sha512", this.#secret).update("pad").digest();
    return Buffer.from(
      Buffer.from(bytes).map((byte, index) => byte ^ (pad[index % pad.length] ?? 0)),
    );
  }

  #tag(key: Uint8Array): Buffer {
    return createHmac("sha256", this.#secret).update(key).digest().subarray(0, 8);
  }
}

test("provider rules catch a sloppy provider, each naming the rule and what was seen", async () => {
  const shared = new SloppyProvider();
  const report = await runProviderConformance(
    {
      label: "sloppy",
      open: async () => shared,
      timeoutMs: 500,
      faults: {
        revoke: () => {
          SloppyProvider.revoked = true;
        },
        delay: (milliseconds) => {
          SloppyProvider.delayMs = milliseconds;
        },
        restore: () => {
          SloppyProvider.revoked = false;
          SloppyProvider.delayMs = 0;
        },
      },
    },
    { concurrency: 20 },
  );
  const verdict = (id: string) => report.results.find((result) => result.id === id);
  const expectations: [string, RegExp][] = [
    ["provider.describe", /changed to .*sloppy:2/],
    ["provider.tamper", /last byte flipped: unwrapKey failed .* as other/],
    ["provider.health-revoked", /checkHealth under revoke succeeded/],
    ["provider.timeout", /gave up after \d+ ms|succeeded after/],
    ["provider.abort", /succeeded after \d+ ms although the caller gave up/],
    ["provider.no-secrets", /an error \(ProviderError\) exposes the whole key in hex/],
    ["provider.no-secrets", /stdout\/stderr during the run contain the whole key in hex/],
  ];
  for (const [id, evidence] of expectations) {
    const result = verdict(id);
    assert.equal(result?.status, "fail", `${id} should fail: ${result?.evidence.join("; ")}`);
    assert.ok(
      result.evidence.some((fact) => fact.startsWith("FAIL: ") && evidence.test(fact)),
      `${id} evidence should match ${evidence}: ${result.evidence.join("; ")}`,
    );
  }
  for (const id of ["provider.round-trip", "provider.concurrency", "provider.health"]) {
    assert.equal(verdict(id)?.status, "pass", `${id}: ${verdict(id)?.evidence.join("; ")}`);
  }
});
