import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ConfigError } from "../../../../src/errors.js";
import {
  assertOnlyProblem,
  document,
  KEY16,
  KEY24,
  KEY32,
  KMS_V2,
  parse,
  problemsOf,
  withProviders,
  withResources,
} from "./helpers.js";

const P0 = "resources[0].providers[0]";
const kms = (fields: Record<string, unknown>) => ({
  kms: { apiVersion: "v2", name: "p", endpoint: "unix:///run/kms.sock", ...fields },
});
const aes = (type: string, ...keys: unknown[]) => ({ [type]: { keys } });

describe("EncryptionConfiguration validation: resource lists", () => {
  test("resources must have at least one entry", () => {
    assertOnlyProblem(document([]), "resources", /at least one resources is required/);
  });

  test("each entry needs at least one resource", () => {
    assertOnlyProblem(
      document([{ resources: [], providers: [KMS_V2] }]),
      "resources[0].resources",
      /at least one resources\[0\]\.resources is required/,
    );
  });

  test("each entry needs at least one provider", () => {
    assertOnlyProblem(
      document([{ resources: ["secrets"], providers: [] }]),
      "resources[0].providers",
      /at least one resources\[0\]\.providers is required/,
    );
  });

  test("resource names must be lowercase", () => {
    assertOnlyProblem(
      withResources("secrets", "ConfigMaps"),
      "resources[0].resources[1]",
      /should not contain capital letters/,
    );
  });

  test("a bare * is refused in favour of *. or *.*", () => {
    assertOnlyProblem(withResources("*"), "resources[0].resources[0]", /use '\*\.'.*\*\.\*/);
  });

  test("resource.* (one resource across groups) is refused", () => {
    assertOnlyProblem(withResources("secrets.*"), "resources[0].resources[0]", /across groups/);
  });

  test("the events.k8s.io group is refused: events are stored as core events", () => {
    assertOnlyProblem(
      withResources("*.events.k8s.io"),
      "resources[0].resources[0]",
      /Use 'events' instead/,
    );
    assertOnlyProblem(
      withResources("events.events.k8s.io"),
      "resources[0].resources[0]",
      /Use 'events'/,
    );
    assert.ok(parse(withResources("events")).rules.length === 1, "core events are fine");
  });

  test("the removed extensions group is refused", () => {
    assertOnlyProblem(
      withResources("deployments.extensions"),
      "resources[0].resources[0]",
      /'extensions' group has been removed/,
    );
  });

  test("resources without a REST API are refused", () => {
    for (const name of ["apiserveripinfo", "serviceipallocations", "servicenodeportallocations"]) {
      assertOnlyProblem(
        withResources("secrets", name),
        "resources[0].resources[1]",
        /do not have REST API/,
      );
    }
  });

  test("the same resource twice in one list is a duplicate (secrets. is secrets)", () => {
    assertOnlyProblem(
      withResources("secrets", "configmaps", "secrets"),
      "resources[0].resources",
      /the same resource cannot be specified multiple times/,
    );
    assertOnlyProblem(
      withResources("secrets", "secrets."),
      "resources[0].resources",
      /same resource/,
    );
  });

  test("a wildcard next to a resource it covers is an overlap", () => {
    const overlap = /overlapping resources such as 'secrets' and '\*\.'/;
    assertOnlyProblem(withResources("secrets", "*."), "resources[0].resources", overlap);
    assertOnlyProblem(
      withResources("*.apps", "deployments.apps"),
      "resources[0].resources",
      overlap,
    );
    assertOnlyProblem(withResources("deployments.apps", "*.*"), "resources[0].resources", overlap);
    assertOnlyProblem(withResources("*.*", "*.apps"), "resources[0].resources", overlap);
    assert.ok(parse(withResources("secrets", "*.apps")), "different groups do not overlap");
  });

  test("the same wildcard twice is both a duplicate and an overlap, as in the apiserver", () => {
    const problems = problemsOf(withResources("*.", "*."));
    assert.deepEqual(
      problems.map((p) => p.path),
      ["resources[0].resources", "resources[0].resources"],
    );
    assert.match(problems[0]?.message ?? "", /same resource/);
    assert.match(problems[1]?.message ?? "", /overlapping/);
  });

  test("a resource masked by an earlier *.group entry is refused", () => {
    const text = document([
      { resources: ["*."], providers: [KMS_V2] },
      { resources: ["configmaps", "secrets"], providers: [{ identity: {} }] },
    ]);
    assertOnlyProblem(
      text,
      "resources[1].resources[0]",
      /resource "configmaps" is masked by earlier rule "\*\."/,
    );
    assertOnlyProblem(
      document([
        { resources: ["*.apps"], providers: [KMS_V2] },
        { resources: ["deployments.apps"], providers: [{ identity: {} }] },
      ]),
      "resources[1].resources[0]",
      /resource "deployments\.apps" is masked by earlier rule "\*\.apps"/,
    );
    assertOnlyProblem(
      document([
        { resources: ["*."], providers: [KMS_V2] },
        { resources: ["*."], providers: [{ identity: {} }] },
      ]),
      "resources[1].resources[0]",
      /resource "\*\." is masked by earlier rule "\*\."/,
    );
  });

  test("anything after an earlier *.* entry is masked", () => {
    assertOnlyProblem(
      document([
        { resources: ["*.*"], providers: [KMS_V2] },
        { resources: ["events"], providers: [{ identity: {} }] },
      ]),
      "resources[1].resources[0]",
      /resource "events" is masked by earlier rule "\*\.\*"/,
    );
  });

  test("specific resources before wildcards are not masked", () => {
    const config = parse(
      document([
        { resources: ["events"], providers: [{ identity: {} }] },
        { resources: ["secrets"], providers: [KMS_V2] },
        { resources: ["*.apps"], providers: [{ identity: {} }] },
        { resources: ["*.*"], providers: [{ aesgcm: { keys: [{ name: "k", secret: KEY32 }] } }] },
      ]),
    );
    assert.equal(config.rules.length, 4);
  });
});

describe("EncryptionConfiguration validation: provider elements", () => {
  test("an element must name a provider", () => {
    assertOnlyProblem(withProviders({}), P0, /does not contain any of the expected providers/);
  });

  test("an element holds exactly one provider", () => {
    assertOnlyProblem(
      withProviders({ identity: {}, ...aes("aesgcm", { name: "k", secret: KEY32 }) }),
      P0,
      /more than one provider specified in a single element/,
    );
  });

  test("with two providers in one element only the first (kms before aes) is validated further", () => {
    const problems = problemsOf(
      withProviders({ ...kms({ name: "" }), ...aes("aesgcm", { name: "", secret: "" }) }),
    );
    assert.deepEqual(
      problems.map((p) => p.path),
      [P0, `${P0}.kms.name`],
    );
  });

  test("aes and secretbox providers need at least one key", () => {
    for (const type of ["aesgcm", "aescbc", "secretbox"]) {
      assertOnlyProblem(withProviders(aes(type)), `${P0}.${type}.keys`, /at least one keys/);
    }
  });

  test("a key needs a name", () => {
    assertOnlyProblem(
      withProviders(aes("aesgcm", { name: "k1", secret: KEY32 }, { secret: KEY32 })),
      `${P0}.aesgcm.keys[1].name`,
      /name is a mandatory field for a key/,
    );
  });

  test("a key needs a secret", () => {
    assertOnlyProblem(
      withProviders(aes("secretbox", { name: "k1" })),
      `${P0}.secretbox.keys[0].secret`,
      /secret is a mandatory field for a key/,
    );
  });

  test("a secret must be standard base64, and the message never shows it", () => {
    for (const secret of ["not base64!", "AAAA-_8=", "AAAAAA", "AAA=AAAA"]) {
      const problems = problemsOf(withProviders(aes("aesgcm", { name: "k", secret })));
      assert.equal(problems.length, 1, `one problem for ${secret}`);
      assert.equal(problems[0]?.path, `${P0}.aesgcm.keys[0].secret`);
      assert.match(problems[0]?.message ?? "", /must be base64 encoded/);
      assert.ok(!problems[0]?.message.includes(secret), "the secret is not echoed");
    }
  });

  test("base64 line breaks are ignored, as Go's decoder does", () => {
    const secret = `${KEY32.slice(0, 20)}\r\n${KEY32.slice(20)}\n`;
    const config = parse(withProviders(aes("aesgcm", { name: "k", secret })));
    const provider = config.rules[0]?.providers[0];
    assert.ok(provider?.type === "aesgcm", "aesgcm provider");
    assert.deepEqual(provider.keys[0]?.secret, new Uint8Array(32).fill(3));
  });

  test("aesgcm and aescbc keys are 16, 24 or 32 bytes", () => {
    for (const type of ["aesgcm", "aescbc"]) {
      for (const secret of [KEY16, KEY24, KEY32]) {
        assert.ok(parse(withProviders(aes(type, { name: "k", secret }))), `${type} accepts`);
      }
      const problems = problemsOf(
        withProviders(aes(type, { name: "k", secret: Buffer.alloc(20).toString("base64") })),
      );
      assert.equal(problems.length, 1);
      assert.equal(problems[0]?.path, `${P0}.${type}.keys[0].secret`);
      assert.match(problems[0]?.message ?? "", /got 20, expected one of \[16 24 32\]/);
    }
  });

  test("secretbox keys are exactly 32 bytes", () => {
    assert.ok(parse(withProviders(aes("secretbox", { name: "k", secret: KEY32 }))), "32 accepted");
    assertOnlyProblem(
      withProviders(aes("secretbox", { name: "k", secret: KEY16 })),
      `${P0}.secretbox.keys[0].secret`,
      /got 16, expected one of \[32\]/,
    );
  });

  test("repeated key names are not checked, as in the apiserver", () => {
    const config = parse(
      withProviders(aes("aesgcm", { name: "k", secret: KEY16 }, { name: "k", secret: KEY32 })),
    );
    const provider = config.rules[0]?.providers[0];
    assert.ok(provider?.type === "aesgcm" && provider.keys.length === 2, "both keys kept");
  });
});

describe("EncryptionConfiguration validation: kms providers", () => {
  test("a kms provider needs a name", () => {
    assertOnlyProblem(
      withProviders(kms({ name: "" })),
      `${P0}.kms.name`,
      /name is a mandatory field for a provider/,
    );
  });

  test("a kms v2 name must not contain ':' (v1 names may)", () => {
    assertOnlyProblem(
      withProviders(kms({ name: "a:b" })),
      `${P0}.kms.name`,
      /must not contain ':'/,
    );
    const v1 = parse(withProviders(kms({ apiVersion: "v1", name: "a:b" })), { allowKmsV1: true });
    assert.equal(v1.rules[0]?.providers.length, 1);
  });

  test("kms v2 names are unique across all kms providers of the file", () => {
    const text = document([
      { resources: ["secrets"], providers: [kms({ apiVersion: "v1", name: "same" })] },
      { resources: ["configmaps"], providers: [kms({ name: "same" })] },
    ]);
    assertOnlyProblem(
      text,
      "resources[1].providers[0].kms.name",
      /duplicate KMS provider name same, names must be unique/,
      { allowKmsV1: true },
    );
  });

  test("kms v1 names may repeat unless the file is reloaded automatically", () => {
    const text = withProviders(
      kms({ apiVersion: "v1", name: "same" }),
      kms({ apiVersion: "v1", name: "same" }),
    );
    assert.ok(parse(text, { allowKmsV1: true }), "accepted without reload");
    assertOnlyProblem(text, "resources[0].providers[1].kms.name", /duplicate KMS provider name/, {
      allowKmsV1: true,
      reload: true,
    });
  });

  test("the endpoint is required", () => {
    assertOnlyProblem(
      withProviders(kms({ endpoint: "" })),
      `${P0}.kms.endpoint`,
      /endpoint is a mandatory field for a kms/,
    );
  });

  test("the endpoint scheme must be unix (compared in lowercase, as Go parses it)", () => {
    for (const endpoint of ["tcp://127.0.0.1:50051", "/run/kms.sock", "run/kms.sock"]) {
      assertOnlyProblem(
        withProviders(kms({ endpoint })),
        `${P0}.kms.endpoint`,
        /unsupported scheme .* only unix is supported/,
      );
    }
    const config = parse(withProviders(kms({ endpoint: "UNIX:///run/kms.sock" })));
    const provider = config.rules[0]?.providers[0];
    assert.ok(provider?.type === "kms" && provider.socketPath === "/run/kms.sock", "UNIX accepted");
  });

  test("an endpoint Go cannot parse as a URL is refused", () => {
    for (const endpoint of ["unix:///run/%zz.sock", "://x", "unix://host:port/x", "unix:///a\tb"]) {
      assertOnlyProblem(
        withProviders(kms({ endpoint })),
        `${P0}.kms.endpoint`,
        /invalid endpoint for kms provider/,
      );
    }
  });

  test("an endpoint with no socket path is refused (it could never be dialled)", () => {
    for (const endpoint of ["unix:kms.sock", "unix://host", "unix://"]) {
      assertOnlyProblem(withProviders(kms({ endpoint })), `${P0}.kms.endpoint`, /names no socket/);
    }
  });

  test("apiVersion must be v1 or v2", () => {
    assertOnlyProblem(
      withProviders(kms({ apiVersion: "v3" })),
      `${P0}.kms.apiVersion`,
      /unsupported apiVersion v3 for KMS provider, only v1 and v2 are supported/,
    );
  });

  test("cachesize is an error with v2", () => {
    assertOnlyProblem(
      withProviders(kms({ cachesize: 100 })),
      `${P0}.kms.cachesize`,
      /cachesize is not supported in v2/,
    );
  });

  test("cachesize 0 is invalid for v1 (negative disables the cache)", () => {
    assertOnlyProblem(
      withProviders(kms({ apiVersion: "v1", cachesize: 0 })),
      `${P0}.kms.cachesize`,
      /positive value, or negative to disable/,
      { allowKmsV1: true },
    );
    const config = parse(withProviders(kms({ apiVersion: "v1", cachesize: -1 })), {
      allowKmsV1: true,
    });
    const provider = config.rules[0]?.providers[0];
    assert.ok(provider?.type === "kms" && provider.cacheSize === -1, "negative kept");
  });

  test("the timeout must be positive", () => {
    for (const timeout of ["0s", "0", "-1s"]) {
      assertOnlyProblem(
        withProviders(kms({ timeout })),
        `${P0}.kms.timeout`,
        /timeout should be a positive value/,
      );
    }
  });

  test("kms v1 is refused unless allowed, as with the KMSv1 feature gate off", () => {
    const text = document([
      { resources: ["secrets"], providers: [KMS_V2] },
      {
        resources: ["configmaps"],
        providers: [{ identity: {} }, kms({ apiVersion: "v1", name: "old" })],
      },
    ]);
    assertOnlyProblem(text, "resources[1].providers[1].kms.apiVersion", /KMSv1 is deprecated.*v2/);
    assert.ok(parse(text, { allowKmsV1: true }), "accepted with allowKmsV1");
  });
});

describe("EncryptionConfiguration validation: reporting", () => {
  test("every problem is reported, in the apiserver's order, with its path", () => {
    const problems = problemsOf(
      document([
        { resources: ["Secrets"], providers: [aes("aesgcm", { name: "", secret: KEY16 })] },
        {
          resources: ["configmaps"],
          providers: [kms({ name: "x:y", endpoint: "tcp://h", cachesize: 5, timeout: "0s" })],
        },
      ]),
    );
    assert.deepEqual(
      problems.map((p) => p.path),
      [
        "resources[0].resources[0]",
        "resources[0].providers[0].aesgcm.keys[0].name",
        "resources[1].providers[0].kms.name",
        "resources[1].providers[0].kms.timeout",
        "resources[1].providers[0].kms.endpoint",
        "resources[1].providers[0].kms.cachesize",
      ],
    );
  });

  test("the error message names each path and says to fix the file, without secrets", () => {
    const secret = Buffer.alloc(20, 7).toString("base64");
    try {
      parse(withProviders(aes("aesgcm", { name: "k", secret })), { source: "enc.yaml" });
      assert.fail("accepted");
    } catch (error) {
      assert.ok(error instanceof ConfigError, "a ConfigError");
      assert.equal(error.setting, "EncryptionConfiguration enc.yaml");
      const message = error.message;
      assert.match(message, /^EncryptionConfiguration enc\.yaml: /);
      assert.match(message, /resources\[0\]\.providers\[0\]\.aesgcm\.keys\[0\]\.secret: /);
      assert.match(message, /fix the file/);
      assert.ok(!message.includes(secret), "no secret in the message");
    }
  });
});
