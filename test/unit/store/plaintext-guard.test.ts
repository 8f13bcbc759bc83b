import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { credentialShapes, DETECTOR_NAMES } from "../../../src/store/credential-shapes.js";
import { type GuardFinding, PlaintextGuard } from "../../../src/store/plaintext-guard.js";

const ALL = new Set(DETECTOR_NAMES);

// Built from parts so that no scanner mistakes this test file for a leak.
const samples = {
  "api-key": [
    `sk-${"A1b2C3d4E5f6G7h8I9j0K1l2"}`,
    `sk-proj-${"Zx9_Yw8-Vu7Ts6Rq5Po4Nm3Lk2"}`,
    `sk_live_${"4eC39HqLyjWDarjtT1zdp7dc"}`,
    `AIza${"SyA-1234567890abcdefghijklmnopqrstu"}`,
  ],
  "aws-access-key": [`AKIA${"IOSFODNN7EXAMPLE"}`, `ASIA${"Y3KXAMPLE2345678"}`],
  "github-token": [
    `ghp_${"a".repeat(18)}${"B7".repeat(9)}`,
    `github_pat_${"11ABCDEFG0".repeat(5)}`,
  ],
  "slack-token": [`xoxb-${"123456789012-1234567890123-AbCdEfGhIjKlMnOp"}`],
  "private-key": [
    `-----BEGIN ${"PRIVATE"} KEY-----\nMIIE...\n-----END PRIVATE KEY-----`,
    `-----BEGIN RSA ${"PRIVATE"} KEY-----`,
    `-----BEGIN OPENSSH ${"PRIVATE"} KEY-----`,
    `-----BEGIN EC ${"PRIVATE"} KEY-----`,
  ],
  "bearer-token": [`Authorization: Bearer ${"abcDEF123456ghiJKL789"}`],
  jwt: [
    `eyJhbGciOiJIUzI1NiJ9.${"eyJzdWIiOiIxMjM0NTY3ODkwIn0"}.${"dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"}`,
  ],
  "url-password": [`postgres://app:${"s3cr3t-pass"}@db.internal:5432/app`],
  "high-entropy": [
    "q8Zr2LmX7vKp4NwT9sYb3HcJ6fGd1RaE5uVi0OoQ",
    "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
  ],
} as const;

describe("credential shapes", () => {
  test("each detector recognises its credential shapes", () => {
    for (const [detector, texts] of Object.entries(samples)) {
      for (const text of texts) {
        assert.ok(
          credentialShapes(`note: ${text} (pasted)`, ALL).includes(
            detector as (typeof DETECTOR_NAMES)[number],
          ),
          `${detector} should match sample ${texts.indexOf(text as never)}`,
        );
      }
    }
  });

  test("prose, identifiers, UUIDs, URLs without passwords and short tokens are not credentials", () => {
    for (const text of [
      "Q3 launch plan for ACME Corp: ship the onboarding flow by Friday",
      "workroom 4f9c2b1e-8d3a-4e6f-9b2c-7a1d5e8f3c4b",
      "see https://example.com/docs/getting-started?tab=install#step-2",
      "skeleton key, sk-short, AKIA lowercase akiaiosfodnn7example",
      "Bearer of bad news",
      "the_quick_brown_fox_jumps_over_the_lazy_dog_again",
      "eyJ is how base64 JSON starts",
      "ghp_tooShort",
      "-----BEGIN CERTIFICATE-----",
      "-----BEGIN PUBLIC KEY-----",
      "mailto:someone@example.com",
      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1",
    ]) {
      assert.deepEqual(credentialShapes(text, ALL), [], text);
    }
  });

  test("only the enabled detectors run", () => {
    const text = `${samples["aws-access-key"][0]} ${samples.jwt[0]}`;
    assert.deepEqual(credentialShapes(text, new Set(["jwt"])), ["jwt"]);
    assert.deepEqual(credentialShapes(text, new Set()), []);
  });

  test("the high-entropy detector's minimum length is configurable", () => {
    const token = "q8Zr2LmX7vKp4NwT9sYb3HcJ";
    assert.deepEqual(credentialShapes(token, ALL), [], "24 characters is under the default 32");
    assert.deepEqual(credentialShapes(token, ALL, { minEntropyLength: 20 }), ["high-entropy"]);
  });
});

describe("PlaintextGuard", () => {
  const encrypted = ["secrets", "profile.token"];
  const document = {
    title: "Quarterly goals",
    goal: `use ${samples["api-key"][0]} for the demo`,
    secrets: samples["aws-access-key"][0],
    profile: { token: samples.jwt[0], bio: ["hello", samples["private-key"][1]] },
  };

  test("warn mode reports plaintext fields by path and detector and never carries the value", () => {
    const warnings: GuardFinding[] = [];
    const guard = new PlaintextGuard({ mode: "warn" }, (finding) => warnings.push(finding));
    guard.check("workrooms", "w-1", document, encrypted);
    assert.deepEqual(warnings, [
      { resource: "workrooms", recordId: "w-1", path: "goal", detectors: ["api-key"] },
      { resource: "workrooms", recordId: "w-1", path: "profile.bio.1", detectors: ["private-key"] },
    ]);
    const text = JSON.stringify(warnings);
    for (const secret of [samples["api-key"][0], "PRIVATE KEY"]) {
      assert.ok(!text.includes(secret), "a finding never contains the value");
    }
  });

  test("fields the codec encrypts are never inspected", () => {
    const guard = new PlaintextGuard({ mode: "refuse" }, () => assert.fail("no warning"));
    guard.check("users", "u-1", { secrets: samples["aws-access-key"][0] }, ["secrets"]);
    guard.check("users", "u-1", { profile: { token: samples.jwt[0] } }, ["profile.token"]);
  });

  test("refuse mode rejects the write with PLAINTEXT_CREDENTIAL naming the field, not the value", () => {
    const guard = new PlaintextGuard({ mode: "refuse" }, () => assert.fail("refuse does not warn"));
    assert.throws(
      () => guard.check("workrooms", "w-1", document, encrypted),
      (error: Error & { code?: string }) => {
        assert.equal(error.code, "PLAINTEXT_CREDENTIAL");
        assert.match(
          error.message,
          /^refused to store workrooms "w-1": plaintext field goal looks like a credential \(api-key\) and 1 more field\(s\) do too; move the secret into an encrypted field \(list it in the field map\) or remove it$/,
        );
        assert.ok(!error.message.includes(samples["api-key"][0]), "no value in the message");
        return true;
      },
    );
  });

  test("off mode checks nothing", () => {
    const guard = new PlaintextGuard({ mode: "off" }, () => assert.fail("off never warns"));
    assert.deepEqual(guard.inspect("workrooms", "w-1", document, encrypted), []);
    guard.check("workrooms", "w-1", document, encrypted);
  });

  test("checkedPaths limits a resource to the listed plaintext fields; ignore exempts fields", () => {
    const guard = new PlaintextGuard(
      {
        mode: "warn",
        checkedPaths: { workrooms: ["title", "profile"] },
        ignore: ["workrooms:profile.bio.1"],
      },
      () => undefined,
    );
    assert.deepEqual(guard.inspect("workrooms", "w-1", document, encrypted), []);
    assert.deepEqual(
      guard.inspect(
        "workrooms",
        "w-1",
        { ...document, title: samples["slack-token"][0] },
        encrypted,
      ),
      [
        {
          resource: "workrooms",
          recordId: "w-1",
          path: "title",
          detectors: ["slack-token", "high-entropy"],
        },
      ],
    );
    // Resources without a list have every plaintext field checked.
    assert.equal(guard.inspect("agents", "a-1", document, encrypted).length, 2);
  });

  test("detectors can be narrowed", () => {
    const guard = new PlaintextGuard({ mode: "warn", detectors: ["private-key"] }, () => undefined);
    assert.deepEqual(
      guard.inspect("workrooms", "w-1", document, encrypted).map((finding) => finding.path),
      ["profile.bio.1"],
    );
  });

  test("invalid options are INVALID_CONFIG naming the setting", () => {
    for (const [options, pattern] of [
      [{ mode: "block" }, /^plaintext guard mode: /],
      [{ mode: "warn", detectors: ["passwords"] }, /^plaintext guard detectors\.0: /],
      [{ mode: "warn", minEntropyLength: 4 }, /^plaintext guard minEntropyLength: /],
      [
        { mode: "warn", ignore: ["no-colon"] },
        /^plaintext guard ignore\.0: must be "resource:path" \(fix the plaintext guard options\)$/,
      ],
      [{ mode: "warn", extra: true }, /^plaintext guard: Unrecognized key/],
    ] as const) {
      assert.throws(
        () => new PlaintextGuard(options as never, () => undefined),
        (error: Error & { code?: string }) =>
          error.code === "INVALID_CONFIG" && pattern.test(error.message),
        JSON.stringify(options),
      );
    }
  });
});
