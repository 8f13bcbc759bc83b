import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { InvalidEncryptionConfigurationError } from "../../../../src/engine/config/config-error.js";
import { loadEncryptionConfiguration } from "../../../../src/engine/config/encryption-configuration.js";
import type { ProviderConfig } from "../../../../src/engine/config/types.js";
import { assertOnlyProblem, KEY32, parse, problemsOf, withProviders } from "./helpers.js";

const SHIPPED = new URL("../../../../config/encryption-configuration.yaml", import.meta.url);
const README = new URL("../../../../README.md", import.meta.url);
const HEADER = "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\n";

function onlyProvider(yaml: string, options?: { allowKmsV1?: boolean }): ProviderConfig {
  const provider = parse(yaml, options).rules[0]?.providers[0];
  assert.ok(provider !== undefined, "one provider");
  return provider;
}

function kmsYaml(fields: string): string {
  return `${HEADER}resources:\n  - resources: [secrets]\n    providers:\n      - kms:\n${fields
    .trim()
    .split("\n")
    .map((line) => `          ${line.trim()}`)
    .join("\n")}\n`;
}

describe("EncryptionConfiguration files shipped with the project", () => {
  test("config/encryption-configuration.yaml parses to kms v2 then identity", async () => {
    const bytes = await readFile(SHIPPED);
    const config = await loadEncryptionConfiguration(SHIPPED.pathname);
    assert.equal(config.hash, createHash("sha256").update(bytes).digest("hex"));
    assert.deepEqual(config.rules, [
      {
        resources: ["secrets", "configmaps"],
        providers: [
          {
            type: "kms",
            apiVersion: "v2",
            name: "kms-envelope",
            endpoint: "unix:///var/run/kmsplugin/kms-envelope.sock",
            socketPath: "/var/run/kmsplugin/kms-envelope.sock",
            cacheSize: undefined,
            timeoutMs: 3000,
          },
          { type: "identity" },
        ],
      },
    ]);
  });

  test("its documented '*.*' variant parses too", async () => {
    const text = (await readFile(SHIPPED, "utf8"))
      .replace(/^ {6}- secrets\n {6}- configmaps\n/m, "")
      .replace("# - '*.*'", "- '*.*'");
    assert.deepEqual(parse(text).rules[0]?.resources, ["*.*"]);
  });

  test("the README example parses to the same rules", async () => {
    const readme = await readFile(README, "utf8");
    const block =
      /```yaml\n(apiVersion: apiserver\.config\.k8s\.io\/v1\nkind: EncryptionConfiguration\n[\s\S]*?)```/.exec(
        readme,
      )?.[1];
    assert.ok(block !== undefined, "README has the example");
    const shipped = await loadEncryptionConfiguration(SHIPPED.pathname);
    assert.deepEqual(parse(block).rules, shipped.rules);
  });
});

describe("EncryptionConfiguration decoding", () => {
  test("JSON is read as well as YAML", () => {
    const json = JSON.stringify({
      kind: "EncryptionConfiguration",
      apiVersion: "apiserver.config.k8s.io/v1",
      resources: [
        {
          resources: ["secrets"],
          providers: [{ secretbox: { keys: [{ name: "k", secret: KEY32 }] } }],
        },
      ],
    });
    const provider = onlyProvider(json);
    assert.ok(provider.type === "secretbox", "secretbox");
    assert.equal(provider.keys[0]?.name, "k");
    assert.deepEqual(provider.keys[0]?.secret, new Uint8Array(32).fill(3));
  });

  test("the legacy kind EncryptionConfig with apiVersion v1 is accepted", () => {
    const config = parse(
      "apiVersion: v1\nkind: EncryptionConfig\nresources:\n  - resources: [secrets]\n    providers: [identity: {}]\n",
    );
    assert.deepEqual(config.rules[0]?.providers, [{ type: "identity" }]);
  });

  test("any other apiVersion/kind pair is refused", () => {
    const body = "resources:\n  - resources: [secrets]\n    providers: [identity: {}]\n";
    assertOnlyProblem(
      `apiVersion: v1\nkind: EncryptionConfiguration\n${body}`,
      "kind",
      /use apiVersion: apiserver\.config\.k8s\.io\/v1 with kind: EncryptionConfiguration/,
    );
    assertOnlyProblem(
      `apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfig\n${body}`,
      "kind",
      /not an EncryptionConfiguration/,
    );
    assertOnlyProblem(
      `apiVersion: apiserver.config.k8s.io/v1beta1\nkind: EncryptionConfiguration\n${body}`,
      "apiVersion",
      /not an EncryptionConfiguration/,
    );
    assertOnlyProblem(`apiVersion: apiserver.config.k8s.io/v1\n${body}`, "kind", /kind is missing/);
    assertOnlyProblem(
      `kind: EncryptionConfiguration\n${body}`,
      "apiVersion",
      /apiVersion is missing/,
    );
  });

  test("unknown fields are refused wherever they are, case-sensitively", () => {
    const problems = problemsOf(
      `${HEADER}metadata: {name: x}\nresources:\n  - resources: [secrets]\n    provider: []\n    providers:\n      - identity: {}\n        Kms: {}\n      - aesgcm:\n          keys: [{name: k, secret: ${KEY32}, Secret: x}]\n          key: []\n      - identity: {enabled: true}\n`,
    );
    assert.deepEqual(
      problems.map((p) => p.path),
      [
        "metadata",
        "resources[0].provider",
        "resources[0].providers[0].Kms",
        "resources[0].providers[1].aesgcm.key",
        "resources[0].providers[1].aesgcm.keys[0].Secret",
        "resources[0].providers[2].identity.enabled",
      ],
    );
    assert.ok(
      problems.every((p) => p.message.startsWith("unknown field")),
      "all unknown fields",
    );
    assert.match(problems[2]?.message ?? "", /aesgcm, aescbc, secretbox, identity, kms/);
  });

  test("a misspelt kms field is refused and names the fields", () => {
    assertOnlyProblem(
      kmsYaml("apiVersion: v2\nname: p\nendpoint: unix:///s\ntimout: 3s"),
      "resources[0].providers[0].kms.timout",
      /unknown field: the fields here are apiVersion, name, cachesize, endpoint, timeout/,
    );
  });

  test("values of the wrong type are refused, without echoing them", () => {
    const problems = problemsOf(
      `${HEADER}resources:\n  - resources: secrets\n    providers:\n      - kms: {apiVersion: v1, name: 7, endpoint: unix:///s, cachesize: "10", timeout: 3}\n      - aescbc: {keys: [{name: k, secret: 12345678}]}\n      - identity: true\n`,
    );
    assert.deepEqual(
      problems.map((p) => [p.path, p.message]),
      [
        ["resources[0].resources", "expected a list, got a string"],
        ["resources[0].providers[0].kms.name", "expected a string, got a number"],
        ["resources[0].providers[0].kms.cachesize", "expected an integer, got a string"],
        [
          "resources[0].providers[0].kms.timeout",
          "expected a duration string such as 3s or 500ms, got a number",
        ],
        ["resources[0].providers[1].aescbc.keys[0].secret", "expected a string, got a number"],
        ["resources[0].providers[2].identity", "expected a mapping, got a boolean"],
      ],
    );
  });

  test("cachesize must fit a 32-bit integer", () => {
    assertOnlyProblem(
      kmsYaml("apiVersion: v1\nname: p\nendpoint: unix:///s\ncachesize: 2147483648"),
      "resources[0].providers[0].kms.cachesize",
      /32-bit/,
      { allowKmsV1: true },
    );
    assertOnlyProblem(
      kmsYaml("apiVersion: v1\nname: p\nendpoint: unix:///s\ncachesize: 1.5"),
      "resources[0].providers[0].kms.cachesize",
      /expected an integer/,
      { allowKmsV1: true },
    );
  });

  test("null means not set, as Go decodes it: `identity:` alone names no provider", () => {
    assertOnlyProblem(
      `${HEADER}resources:\n  - resources: [secrets]\n    providers:\n      - identity:\n`,
      "resources[0].providers[0]",
      /does not contain any of the expected providers/,
    );
    const provider = onlyProvider(
      kmsYaml("apiVersion: v2\nname: p\nendpoint: unix:///s\ntimeout: null"),
    );
    assert.ok(provider.type === "kms" && provider.timeoutMs === 3000, "null timeout defaults");
  });

  test("an empty file is an error", () => {
    assertOnlyProblem("", "", /the file is empty/);
    const problems = problemsOf(new Uint8Array(0));
    assert.match(problems[0]?.message ?? "", /empty/);
  });

  test("a file with only comments or blank lines is an error", () => {
    assertOnlyProblem("# nothing here\n\n", "", /no document/);
    assertOnlyProblem("---\n", "", /expected a mapping/);
    assertOnlyProblem("- a\n- b\n", "", /expected a mapping .* got a list/);
  });

  test("YAML syntax errors give line and column but never the source text", () => {
    const secret = "c2VjcmV0IGlzIHNlY3VyZQ";
    const problems = problemsOf(
      `${HEADER}resources:\n  - resources: [secrets\n    secret: "${secret}\n`,
    );
    assert.equal(problems.length, 1);
    assert.equal(problems[0]?.path, "");
    assert.match(problems[0]?.message ?? "", /not valid YAML or JSON at line \d+, column \d+/);
    assert.ok(!problems[0]?.message.includes(secret), "no source text in the message");
  });

  test("duplicate keys are refused", () => {
    assertOnlyProblem(`${HEADER}kind: EncryptionConfiguration\nresources: []\n`, "", /unique/);
  });

  test("later YAML documents are not read, as by the apiserver", () => {
    const config = parse(
      `${HEADER}resources:\n  - resources: [secrets]\n    providers: [identity: {}]\n---\nnot: [an, encryption, configuration]\n`,
    );
    assert.equal(config.rules.length, 1);
  });

  test("bytes that are not UTF-8 are refused", () => {
    assertOnlyProblem(
      Buffer.from([0x6b, 0x69, 0x6e, 0x64, 0x3a, 0x20, 0xff, 0xfe]) as unknown as string,
      "",
      /not valid UTF-8/,
    );
  });

  test("a document nested a thousand levels deep is refused, every time it is read", () => {
    // The second parse of such a file used to abort Node (a fatal RegExpCompiler
    // out-of-memory after yaml's composer overflowed the stack), killing a reloading process.
    const nested = `${"[".repeat(1000)}${"]".repeat(1000)}`;
    for (let attempt = 0; attempt < 3; attempt++) {
      assertOnlyProblem(nested, "", /collections nest more than 64 levels deep/);
    }
  });
});

describe("EncryptionConfiguration defaults", () => {
  test("kms apiVersion defaults to v1, with cachesize 1000 and timeout 3s", () => {
    const provider = onlyProvider(kmsYaml("name: p\nendpoint: unix:///run/p.sock"), {
      allowKmsV1: true,
    });
    assert.deepEqual(provider, {
      type: "kms",
      apiVersion: "v1",
      name: "p",
      endpoint: "unix:///run/p.sock",
      socketPath: "/run/p.sock",
      cacheSize: 1000,
      timeoutMs: 3000,
    });
  });

  test("so a kms provider without apiVersion needs KMSv1 allowed", () => {
    assertOnlyProblem(
      kmsYaml("name: p\nendpoint: unix:///run/p.sock"),
      "resources[0].providers[0].kms.apiVersion",
      /KMSv1 is deprecated/,
    );
  });

  test("kms v2 has no cache size and the default timeout", () => {
    const provider = onlyProvider(kmsYaml("apiVersion: v2\nname: p\nendpoint: unix:///run/p.sock"));
    assert.ok(provider.type === "kms", "kms");
    assert.equal(provider.cacheSize, undefined);
    assert.equal(provider.timeoutMs, 3000);
  });

  test("timeouts use Go duration syntax", () => {
    for (const [timeout, ms] of [
      ["500ms", 500],
      ["1m30s", 90_000],
      ["1.5s", 1500],
      ["2h", 7_200_000],
      ["1500us", 1.5],
    ] as const) {
      const provider = onlyProvider(
        kmsYaml(`apiVersion: v2\nname: p\nendpoint: unix:///s\ntimeout: ${timeout}`),
      );
      assert.ok(provider.type === "kms" && provider.timeoutMs === ms, `${timeout} is ${ms} ms`);
    }
    assertOnlyProblem(
      kmsYaml("apiVersion: v2\nname: p\nendpoint: unix:///s\ntimeout: '3'"),
      "resources[0].providers[0].kms.timeout",
      /time: missing unit in duration "3"/,
    );
    assertOnlyProblem(
      kmsYaml("apiVersion: v2\nname: p\nendpoint: unix:///s\ntimeout: 3 s"),
      "resources[0].providers[0].kms.timeout",
      /time: unknown unit " s" in duration "3 s"/,
    );
  });

  test("unix:///@name is the abstract socket \\0name", () => {
    const provider = onlyProvider(
      kmsYaml("apiVersion: v2\nname: p\nendpoint: unix:///@kms-plugin"),
    );
    assert.ok(provider.type === "kms" && provider.socketPath === "\0kms-plugin", "abstract");
    assert.equal(provider.endpoint, "unix:///@kms-plugin");
  });

  test("the socket path is the URL's unescaped path", () => {
    const provider = onlyProvider(
      kmsYaml("apiVersion: v2\nname: p\nendpoint: unix:///run/my%20plugin.sock?x=1"),
    );
    assert.ok(
      provider.type === "kms" && provider.socketPath === "/run/my plugin.sock",
      "unescaped",
    );
  });
});

describe("EncryptionConfiguration model", () => {
  test("is frozen all the way down", () => {
    const config = parse(
      withProviders({ aesgcm: { keys: [{ name: "k", secret: KEY32 }] } }, { identity: {} }),
    );
    const rule = config.rules[0];
    const provider = rule?.providers[0];
    assert.ok(Object.isFrozen(config) && Object.isFrozen(config.rules), "config frozen");
    assert.ok(rule && Object.isFrozen(rule) && Object.isFrozen(rule.resources), "rule frozen");
    assert.ok(Object.isFrozen(rule?.providers) && Object.isFrozen(provider), "providers frozen");
    assert.ok(provider?.type === "aesgcm" && Object.isFrozen(provider.keys[0]), "keys frozen");
  });

  test("the hash is sha256 of the exact bytes", () => {
    const text = withProviders({ identity: {} });
    assert.equal(parse(text).hash, createHash("sha256").update(text).digest("hex"));
    assert.notEqual(parse(`${text}\n`).hash, parse(text).hash);
  });
});

describe("loadEncryptionConfiguration", () => {
  test("reads the file and names it in errors", async () => {
    const dir = await mkdtemp(join(tmpdir(), "enc-config-"));
    try {
      const path = join(dir, "enc.yaml");
      await writeFile(path, "");
      await assert.rejects(loadEncryptionConfiguration(path), (error: unknown) => {
        assert.ok(error instanceof InvalidEncryptionConfigurationError, "typed error");
        assert.match(error.message, /enc\.yaml.*the file is empty/);
        return true;
      });
      await assert.rejects(
        loadEncryptionConfiguration(join(dir, "missing.yaml")),
        (error: unknown) => {
          assert.ok(error instanceof InvalidEncryptionConfigurationError, "typed error");
          assert.equal(error.code, "INVALID_CONFIG");
          assert.match(error.message, /cannot read the file \(ENOENT\)/);
          return true;
        },
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
