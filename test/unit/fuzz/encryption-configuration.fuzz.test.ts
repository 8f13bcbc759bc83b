import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import fc from "fast-check";
import { InvalidEncryptionConfigurationError } from "../../../src/engine/config/config-error.js";
import { parseEncryptionConfiguration } from "../../../src/engine/config/encryption-configuration.js";
import { parseGoDuration } from "../../../src/engine/config/go-duration.js";
import { parseGoUrl } from "../../../src/engine/config/go-url.js";
import { parseKmsEndpoint } from "../../../src/engine/config/kms-endpoint.js";
import type { EncryptionConfiguration } from "../../../src/engine/config/types.js";
import { PACKAGE_ROOT } from "../../../src/package-info.js";
import {
  AWKWARD_CHARACTERS,
  PROTOTYPE_NAMES,
  readDeeplyNestedTwice,
  runs,
  textMutationOf,
} from "./fuzz-support.js";

const SAMPLES = ["encryption-configuration.yaml", "encryption-configuration-obot.yaml"].map(
  (name) => readFileSync(join(PACKAGE_ROOT, "config", name), "utf8"),
);

const KEY_SIZES: Record<string, number[]> = {
  aesgcm: [16, 24, 32],
  aescbc: [16, 24, 32],
  secretbox: [32],
};

/** What the engine relies on in every configuration the parser accepts. */
function assertBuildable(config: EncryptionConfiguration): void {
  assert.ok(config.rules.length > 0);
  assert.match(config.hash, /^[0-9a-f]{64}$/);
  for (const rule of config.rules) {
    assert.ok(rule.resources.length > 0 && rule.providers.length > 0);
    for (const provider of rule.providers) {
      if (provider.type === "identity") continue;
      if (provider.type === "kms") {
        assert.ok(provider.socketPath.length > 0, "a kms provider without a socket");
        assert.ok(provider.timeoutMs > 0);
        continue;
      }
      assert.ok(provider.keys.length > 0);
      for (const key of provider.keys) {
        assert.ok(key.name.length > 0);
        assert.ok(KEY_SIZES[provider.type]?.includes(key.secret.length), "a key of a wrong size");
      }
    }
  }
}

/** Parses, insisting on the one typed failure the parser documents. */
function parse(text: string | Uint8Array, allowKmsV1 = false): void {
  try {
    assertBuildable(parseEncryptionConfiguration(text, { allowKmsV1 }));
  } catch (error) {
    if (!(error instanceof InvalidEncryptionConfigurationError)) throw error;
    assert.equal(error.code, "INVALID_CONFIG");
    assert.ok(error.problems.length > 0, "refused without saying why");
  }
}

// Fragments of YAML syntax, YAML 1.1 features (merge keys, !!set, !!omap, !!binary, dates)
// and the configuration's own words, strung together.
const yamlTokens = fc.constantFrom(
  "apiVersion: apiserver.config.k8s.io/v1\n",
  "kind: EncryptionConfiguration\n",
  "resources:\n",
  "- resources: [secrets]\n",
  "  providers:\n",
  "  - identity: {}\n",
  "  - aesgcm: {keys: [{name: k, secret: AAAAAAAAAAAAAAAAAAAAAA==}]}\n",
  "  - kms: {apiVersion: v2, name: p, endpoint: unix:///s.sock, timeout: 3s}\n",
  "%YAML 1.1\n---\n",
  "<<: *a\n",
  "&a ",
  "*a",
  "!!set ",
  "!!omap ",
  "!!binary ",
  "!!timestamp ",
  "!!int ",
  "2001-12-14t21:59:43.10-05:00",
  "? ",
  "- ",
  ": ",
  "{",
  "}",
  "[",
  "]",
  ", ",
  "\n",
  "  ",
  "---\n",
  "...\n",
  "|\n",
  ">-\n",
  '"',
  "'",
  "#",
  "~",
  "null",
  "0x1F",
  "1e400",
  "-.inf",
  ".nan",
  ...PROTOTYPE_NAMES.map((name) => `${name}: `),
);
const yamlish = fc
  .array(fc.oneof(yamlTokens, fc.string({ maxLength: 6 })), { maxLength: 30 })
  .map((parts) => parts.join(""));

const secretOf = (size: number) => Buffer.alloc(size, 9).toString("base64");
const keys = fc.array(
  fc.record({
    name: fc.constantFrom("k1", "k2", "k3"),
    secret: fc.constantFrom(16, 24, 32).map(secretOf),
  }),
  { minLength: 1, maxLength: 2 },
);
const validProvider = fc.oneof(
  fc.constant({ identity: {} }),
  keys.map((list) => ({ aesgcm: { keys: list } })),
  keys.map((list) => ({ aescbc: { keys: list } })),
  fc.constant({ secretbox: { keys: [{ name: "s1", secret: secretOf(32) }] } }),
  fc.record({
    kms: fc.record(
      {
        apiVersion: fc.constantFrom("v1", "v2"),
        name: fc.constantFrom("p", "q", "r"),
        endpoint: fc.constantFrom("unix:///var/run/kms.sock", "unix:///@abstract", "unix:///a%41"),
        timeout: fc.constantFrom("3s", "1.5h", "500ms"),
      },
      { requiredKeys: ["apiVersion", "name", "endpoint"] },
    ),
  }),
);
const validDocuments = fc.record({
  apiVersion: fc.constant("apiserver.config.k8s.io/v1"),
  kind: fc.constant("EncryptionConfiguration"),
  resources: fc.array(
    fc.record({
      resources: fc.uniqueArray(
        fc.constantFrom(
          "secrets",
          "configmaps",
          "*.",
          "*.*",
          "*.apps",
          "deployments.apps",
          "a.b.c",
        ),
        { minLength: 1, maxLength: 3 },
      ),
      providers: fc.array(validProvider, { minLength: 1, maxLength: 3 }),
    }),
    { minLength: 1, maxLength: 3 },
  ),
});

type Json = unknown;
type Path = (string | number)[];

function pathsOf(value: Json, prefix: Path = []): Path[] {
  const here = [prefix];
  if (Array.isArray(value))
    return here.concat(...value.map((item, i) => pathsOf(item, [...prefix, i])));
  if (typeof value === "object" && value !== null) {
    return here.concat(
      ...Object.entries(value).map(([name, item]) => pathsOf(item, [...prefix, name])),
    );
  }
  return here;
}

type Edit =
  | { kind: "set"; value: Json }
  | { kind: "delete" }
  | { kind: "add"; name: string; value: Json };

/** `document` with one node replaced, removed, or (for a mapping) given another field. */
function edited(document: Json, path: Path, edit: Edit): Json {
  if (path.length === 0) {
    if (edit.kind === "set") return edit.value;
    if (
      edit.kind === "add" &&
      typeof document === "object" &&
      document !== null &&
      !Array.isArray(document)
    ) {
      return Object.fromEntries([...Object.entries(document), [edit.name, edit.value]]);
    }
    return edit.kind === "delete" ? undefined : document;
  }
  const [step, ...rest] = path;
  if (Array.isArray(document)) {
    const copy = [...document];
    const child = edited(copy[step as number], rest, edit);
    if (child === undefined) copy.splice(step as number, 1);
    else copy[step as number] = child;
    return copy;
  }
  const entries = Object.entries(document as Record<string, Json>).flatMap(([name, item]) => {
    if (name !== step) return [[name, item]];
    const child = edited(item, rest, edit);
    return child === undefined ? [] : [[name, child]];
  });
  return Object.fromEntries(entries);
}

const oddValues = fc.oneof(
  fc.jsonValue({ maxDepth: 2 }),
  fc.constantFrom<Json>(
    "",
    0,
    -1,
    2 ** 31,
    1.5,
    null,
    [],
    {},
    "*",
    "Secrets",
    "events.events.k8s.io",
    "x.extensions",
    "a.*",
    "serviceipallocations",
    "v3",
    "a:b",
    "unix://host",
    "unix:relative",
    "UNIX:///x",
    "tcp://localhost:1",
    "unix:///a%zz",
    "unix://[::1/x",
    "0",
    "-1s",
    "9223372036854775807ns",
    "9223372036854775808ns",
    ".5s",
    secretOf(31),
    `${secretOf(32).slice(0, 20)}\r\n${secretOf(32).slice(20)}`,
    secretOf(32).replace(/=*$/, ""),
    ...PROTOTYPE_NAMES,
  ),
);
const edits: fc.Arbitrary<Edit> = fc.oneof(
  oddValues.map((value): Edit => ({ kind: "set", value })),
  fc.constant<Edit>({ kind: "delete" }),
  fc
    .tuple(
      fc.oneof(
        fc.constantFrom(
          "cachesize",
          "timeout",
          "identity",
          "kms",
          "keys",
          "name",
          "secret",
          "Resources",
        ),
        fc.constantFrom(...PROTOTYPE_NAMES),
      ),
      oddValues,
    )
    .map(([name, value]): Edit => ({ kind: "add", name, value })),
);

// Valid documents with one to three edits: near-valid, so they reach the deeper rules.
const documents = fc
  .tuple(validDocuments, fc.array(fc.tuple(fc.nat(), edits), { maxLength: 3 }))
  .map(([valid, changes]) =>
    changes.reduce<Json>((document, [n, edit]) => {
      const paths = pathsOf(document);
      return edited(document, paths[n % paths.length] as Path, edit);
    }, valid),
  );

// Line-level edits of the shipped samples: indentation, removed and repeated lines.
const sampleLineEdit = fc
  .tuple(
    fc.constantFrom(...SAMPLES),
    fc.nat(200),
    fc.constantFrom("drop", "repeat", "indent", "dedent"),
  )
  .map(([sample, n, edit]) => {
    const lines = sample.split("\n");
    const at = n % lines.length;
    const line = lines[at] as string;
    const replacement = {
      drop: [],
      repeat: [line, line],
      indent: [`  ${line}`],
      dedent: [line.replace(/^ {1,2}/, "")],
    }[edit];
    return [...lines.slice(0, at), ...replacement, ...lines.slice(at + 1)].join("\n");
  });

describe("fuzz: EncryptionConfiguration decoding (YAML and JSON)", () => {
  it("the shipped sample configurations parse", () => {
    for (const sample of SAMPLES) assertBuildable(parseEncryptionConfiguration(sample));
  });

  it("arbitrary text and YAML-shaped text yield a usable configuration or InvalidEncryptionConfigurationError, nothing else", () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: "binary", maxLength: 200 }), yamlish), (text) =>
        parse(text),
      ),
      runs(600),
    );
  });

  it("arbitrary bytes, invalid UTF-8 included, yield InvalidEncryptionConfigurationError or a configuration", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => parse(bytes)),
      runs(500),
    );
  });

  it("any JSON value as the document yields InvalidEncryptionConfigurationError or a configuration", () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.boolean(), (value, allowKmsV1) =>
        parse(JSON.stringify(value) ?? "null", allowKmsV1),
      ),
      runs(500),
    );
  });

  it("near-valid documents (wrong types, unknown fields, bad keys, endpoints, timeouts, wildcards) yield a usable configuration or InvalidEncryptionConfigurationError", () => {
    fc.assert(
      fc.property(documents, fc.boolean(), (document, allowKmsV1) =>
        parse(JSON.stringify(document) ?? "", allowKmsV1),
      ),
      runs(600),
    );
  });

  it("documents nested up to 2,000 levels deep, each read twice, yield InvalidEncryptionConfigurationError, never a crash", () => {
    readDeeplyNestedTwice(parse);
  });

  it("mutations of the shipped sample configurations yield a usable configuration or InvalidEncryptionConfigurationError", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.constantFrom(...SAMPLES).chain((sample) => textMutationOf(sample)),
          sampleLineEdit,
        ),
        (text) => parse(text),
      ),
      runs(300),
    );
  });
});

describe("fuzz: Go syntax used by the configuration (time.ParseDuration, net/url.Parse)", () => {
  const durationText = fc.oneof(
    fc.string({ unit: "binary", maxLength: 30 }),
    fc
      .array(
        fc.oneof(
          fc.constantFrom("ns", "us", "µs", "μs", "ms", "s", "m", "h", ".", "-", "+", "0"),
          fc.stringMatching(/^[0-9]{1,22}$/),
        ),
        { maxLength: 8 },
      )
      .map((parts) => parts.join("")),
  );

  it("parseGoDuration never throws and only accepts int64 nanoseconds", () => {
    fc.assert(
      fc.property(durationText, (text) => {
        const parsed = parseGoDuration(text);
        if (parsed.ok) {
          assert.ok(parsed.nanoseconds >= -(1n << 63n) && parsed.nanoseconds < 1n << 63n);
        } else assert.match(parsed.error, /^time: /);
      }),
      runs(2000),
    );
  });

  it("parseGoDuration reads back every int64 number of nanoseconds, microseconds, seconds and hours", () => {
    const units: [string, bigint][] = [
      ["ns", 1n],
      ["us", 1_000n],
      ["s", 1_000_000_000n],
      ["h", 3_600_000_000_000n],
    ];
    fc.assert(
      fc.property(
        fc.bigInt({ min: -(1n << 63n) + 1n, max: (1n << 63n) - 1n }),
        fc.constantFrom(...units),
        (n, [unit, scale]) => {
          const whole = n / scale;
          const parsed = parseGoDuration(`${whole}${unit}`);
          assert.deepEqual(parsed, { ok: true, nanoseconds: whole * scale });
        },
      ),
      runs(500),
    );
  });

  it("parseGoUrl and parseKmsEndpoint never throw on any text", () => {
    const urlText = fc.oneof(
      fc.string({ unit: "binary", maxLength: 40 }),
      fc.webUrl({ withQueryParameters: true, withFragments: true }),
      fc
        .array(
          fc.oneof(
            fc.constantFrom(...AWKWARD_CHARACTERS, "unix:", "//", "[", "]", "%2", "%zz"),
            fc.string({ maxLength: 4 }),
          ),
          {
            maxLength: 10,
          },
        )
        .map((parts) => parts.join("")),
    );
    fc.assert(
      fc.property(urlText, (text) => {
        const url = parseGoUrl(text);
        if (url.ok) assert.equal(url.scheme, url.scheme.toLowerCase());
        const endpoint = parseKmsEndpoint(text);
        if (endpoint.ok) assert.ok(endpoint.socketPath.length > 0);
        else assert.ok(endpoint.message.length > 0);
      }),
      runs(2000),
    );
  });
});
