/**
 * The command-line contract (README, "Command line"): an invocation or configuration error
 * exits 2 and a runtime failure 1, each with exactly one line on stderr that names what to fix.
 *
 * The walk is derived from the commander program itself: every command, every option it
 * declares, whether the option is mandatory, takes a value, has choices or an environment
 * variable, and the kind of value its usage shows (`<duration>`, `<file>`). A new command or
 * flag is walked without editing this file, or fails here until it is described (a command
 * needs an invocation below; a new kind of value needs its bad values).
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { Command, Option } from "commander";
import { buildProgram } from "../../src/cli/program.js";
import { DekSourceType, encodeEncryptedObject } from "../../src/engine/kms/encrypted-object.js";
import { PACKAGE_VERSION } from "../../src/package-info.js";
import { openRepository } from "../../src/store/open-repository.js";
import { type CliResult, newMasterKey, runCli, suiteDaemon } from "../support/daemon-process.js";

const directory = mkdtempSync(join(tmpdir(), "kms-envelope-contract-"));
const at = (name: string) => join(directory, name);

const FILES = {
  fieldMap: at("fields.yaml"),
  encryptionConfig: at("encryption.yaml"),
  keyring: at("keyring.yaml"),
  badYaml: at("bad.yaml"),
  /** Valid YAML that is no configuration: a list where a mapping belongs. */
  list: at("list.yaml"),
  missing: at("missing.yaml"),
  /** A regular file where a directory belongs. */
  plain: at("plain.txt"),
  runDir: at("run"),
  dataDir: at("data"),
  missingModule: at("no-such-provider.js"),
} as const;

const MASTER_KEY = newMasterKey();
const LONG_DIRECTORY = `/tmp/${"d".repeat(100)}`;

const FIELD_MAP = `apiVersion: kms-envelope/v1
kind: FieldMap
resources:
  - resource: people
    route: field-service
    fields:
      email: { type: string, lookup: [trim, lowercase] }
  - resource: notes
    route: engine
    fields:
      body: string
`;

const ENCRYPTION_CONFIG = `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [notes, secrets]
    providers:
      - aesgcm:
          keys:
            - name: k1
              secret: ${Buffer.alloc(32, 7).toString("base64")}
      - identity: {}
`;

/** Where a command gets to with good flags, so that each fault below is what stops it. */
interface Invocation {
  readonly args: readonly string[];
  readonly env?: NodeJS.ProcessEnv;
  readonly stdin?: string;
  /** How the good invocation ends: its exit code and what its stderr names. */
  readonly baseline: { readonly code: number; readonly names?: string };
  /** Flags the command needs that commander cannot mark mandatory (one of two is needed). */
  readonly required?: readonly string[];
  /** Flags that take effect only beside others, which are added when they are tested. */
  readonly companions?: Readonly<Record<string, readonly string[]>>;
  /** Flags of another way to run the command, tested with these args instead. */
  readonly instead?: Readonly<Record<string, readonly string[]>>;
  /** Bad values of one flag of this command, where its kind's do not apply. */
  readonly badValues?: Readonly<Record<string, readonly string[]>>;
}

const FIELD_LAYER = [
  "--fields",
  FILES.fieldMap,
  "--encryption-config",
  FILES.encryptionConfig,
  "--run-dir",
  FILES.runDir,
  "--timeout",
  "1s",
];
const STORE = ["--data-dir", FILES.dataDir];
const WITH_MASTER_KEY = { ENCRYPTION_MASTER_KEY: MASTER_KEY };
const LOCAL_KEYRING = ["--provider", "local", "--key-ref", "env:ENCRYPTION_MASTER_KEY"];

/** One good invocation of every command, by its path under kms-envelope. */
const INVOCATIONS: Readonly<Record<string, Invocation>> = {
  // Without a master key serve stops before it listens: every flag is checked by then.
  serve: {
    args: ["--run-dir", FILES.runDir, "--http-address", "off"],
    baseline: { code: 2, names: "ENCRYPTION_MASTER_KEY" },
  },
  status: {
    args: ["--run-dir", FILES.runDir, "--timeout", "1s"],
    baseline: { code: 1, names: "is the daemon running?" },
  },
  keygen: {
    args: [],
    env: WITH_MASTER_KEY,
    baseline: { code: 0 },
    companions: {
      "--provider": ["--keyring", at("keygen-keyring.yaml"), "--key-ref", "env:x"],
      "--key-ref": ["--keyring", at("keygen-keyring.yaml"), "--provider", "local"],
      "--keyring": LOCAL_KEYRING,
    },
    // A keyring that does not exist yet is created.
    badValues: { "--keyring": [FILES.badYaml, FILES.list] },
  },
  rotate: {
    args: ["--keyring", FILES.keyring],
    env: WITH_MASTER_KEY,
    baseline: { code: 0 },
  },
  retire: {
    args: ["--keyring", FILES.keyring, "--key-id", "local:nothing"],
    baseline: { code: 2, names: "local:nothing" },
  },
  // A resource under workspace keys, which needs its workspace; the daemon is not running.
  encrypt: {
    args: ["--resource", "people", "--id", "p1", "--workspace", "w1", ...FIELD_LAYER],
    stdin: '{"email":"a@example.com"}',
    baseline: { code: 1, names: "check that the daemon is running" },
    required: ["--id", "--workspace"],
  },
  decrypt: {
    args: ["--resource", "people", "--id", "p1", "--workspace", "w1", ...FIELD_LAYER],
    stdin: '{"email":"kmse:v1:local:x:AAAA"}',
    baseline: { code: 1, names: "malformed ciphertext" },
    required: ["--id", "--workspace"],
  },
  "etcd decode": {
    args: ["--encryption-config", FILES.encryptionConfig, "--key", "/registry/secrets/ns/db"],
    stdin: "",
    baseline: { code: 0 },
    required: ["--encryption-config"],
  },
  rewrap: { args: [...FIELD_LAYER, ...STORE, "--dry-run"], baseline: { code: 0 } },
  export: {
    args: ["--subject", "s1", ...STORE],
    baseline: { code: 0 },
    badValues: { "--output": [FILES.fieldMap] },
  },
  "store put": {
    args: ["--resource", "notes", ...FIELD_LAYER, ...STORE],
    stdin: "",
    baseline: { code: 0 },
  },
  "store get": {
    args: ["--resource", "notes", "--id", "n1", ...FIELD_LAYER, ...STORE],
    baseline: { code: 1, names: '"n1"' },
  },
  "store list": { args: ["--resource", "notes", ...STORE], baseline: { code: 0 } },
  "store find": {
    args: [
      ["--resource", "people", "--where", "email=a@example.com", "--workspace", "w1"],
      FIELD_LAYER,
      STORE,
    ].flat(),
    baseline: { code: 1, names: "check that the daemon is running" },
  },
  conformance: {
    args: ["--endpoint", `unix://${at("nobody.sock")}`, "--timeout", "100ms", "--samples", "1"],
    baseline: { code: 1, names: "does not conform" },
    required: ["--endpoint"],
    instead: { "--provider": ["--key-ref", "env:ENCRYPTION_MASTER_KEY"] },
  },
};

/**
 * Bad values of each kind of value, by the placeholder an option's usage shows (`--timeout
 * <duration>`). `null`: any text is a value of that kind, or commander checks it (choices).
 */
const BAD_VALUES: Readonly<Record<string, readonly string[] | null>> = {
  duration: ["soon"],
  n: ["0"],
  count: ["many"],
  bytes: ["lots"],
  octal: ["0999"],
  level: ["loud"],
  "host:port": ["nowhere"],
  "uid[:gid]": ["root"],
  url: ["not-a-url"],
  path: [`${LONG_DIRECTORY}.sock`],
  // The socket under it would be too long.
  dir: [LONG_DIRECTORY],
  file: [FILES.missing, FILES.badYaml, FILES.list],
  "module...": [FILES.missingModule],
  "name|module": [FILES.missingModule],
  endpoint: ["relative.sock"],
  "etcd-key": ["secrets/ns/db"],
  prefix: ["/elsewhere"],
  "field=value": ["no-equals-sign"],
  format: null,
  mode: null,
  field: null,
  id: null,
  "key-id": null,
  name: null,
  "name...": null,
  ref: null,
  region: null,
  resource: null,
  workspace: null,
};

/** Bad values of a flag that every command gives the same meaning, where its kind's do not apply. */
const BAD_FLAG_VALUES: Readonly<Record<string, readonly string[]>> = {
  // A directory that cannot be: a regular file stands where it belongs.
  "--data-dir": [FILES.plain],
};

/** Kinds whose bad value is itself what to fix, so an error may name it instead of the flag. */
const NAMED_BY_VALUE = new Set(["file", "module...", "name|module"]);

interface Leaf {
  readonly path: string;
  readonly command: Command;
}

function leavesOf(command: Command, path: string[] = []): Leaf[] {
  return command.commands.flatMap((sub) => {
    const subPath = [...path, sub.name()];
    return sub.commands.length === 0
      ? [{ path: subPath.join(" "), command: sub }]
      : leavesOf(sub, subPath);
  });
}

function groupsOf(command: Command, path: string[] = []): string[][] {
  return [
    path,
    ...command.commands
      .filter((sub) => sub.commands.length > 0)
      .flatMap((sub) => groupsOf(sub, [...path, sub.name()])),
  ];
}

const program = buildProgram(undefined);
const LEAVES = leavesOf(program);

/** The placeholder of an option that takes a value: `duration` for `--timeout <duration>`. */
function kindOf(option: Option): string | undefined {
  return /<([^>]+)>/.exec(option.flags)?.[1];
}

/** The args without `flag` and, when it takes one, its value. */
function without(args: readonly string[], flag: string, takesValue: boolean): string[] {
  const at = args.indexOf(flag);
  return at < 0 ? [...args] : [...args.slice(0, at), ...args.slice(at + (takesValue ? 2 : 1))];
}

/** The one-line shape: exit code, a single `kms-envelope: …` line, naming one of `names`. */
function assertContract(
  result: CliResult,
  code: number,
  names: readonly string[],
  what: string,
): void {
  assert.equal(result.code, code, `${what}: exit ${result.code}; stderr: ${result.stderr}`);
  assert.match(result.stderr, /^kms-envelope: [^\n]+\n$/, `${what}: one line on stderr`);
  assert.ok(
    names.some((name) => result.stderr.includes(name)),
    `${what}: names ${names.join(" or ")}: ${result.stderr}`,
  );
  // grpc-js's and yaml's own wording, which the line must not carry.
  assert.doesNotMatch(result.stderr, /Resolution note|Last error:|LB pick|\^\s*$/);
}

interface Fault {
  readonly name: string;
  readonly args: readonly string[];
  readonly env?: NodeJS.ProcessEnv;
  readonly names: readonly string[];
}

/** Every fault the program's declarations say a command can be given. */
function faultsOf({ command }: Leaf, invocation: Invocation): Fault[] {
  const base = invocation.args;
  const options = command.options.filter((option) => !option.hidden);
  const takesValue = (option: Option) => option.required || option.optional;
  const faults: Fault[] = [
    { name: "an unknown flag", args: [...base, "--no-such-flag"], names: ["--no-such-flag"] },
    { name: "a stray argument", args: [...base, "stray"], names: [`'${command.name()}'`] },
  ];
  // Commander's own check, the same for every option: once per command.
  const last = options.filter(takesValue).at(-1)?.long;
  if (last !== undefined)
    faults.push({ name: `${last} without its value`, args: [...base, last], names: [last] });
  let environment: Fault | undefined;
  for (const option of options) {
    const flag = option.long as string;
    const companions = invocation.companions?.[flag] ?? [];
    const own = invocation.instead?.[flag] ?? base;
    if (option.mandatory || invocation.required?.includes(flag))
      faults.push({
        name: `no ${flag}`,
        args: without(base, flag, takesValue(option)),
        names: [flag],
      });
    if (option.argChoices !== undefined)
      faults.push({
        name: `${flag} no-such-choice`,
        args: [...base, flag, "no-such-choice"],
        names: [flag],
      });
    const kind = kindOf(option);
    if (kind === undefined) continue;
    const values = invocation.badValues?.[flag] ?? BAD_FLAG_VALUES[flag] ?? BAD_VALUES[kind] ?? [];
    const byValue = NAMED_BY_VALUE.has(kind);
    for (const value of values)
      faults.push({
        name: `${flag} ${value}`,
        args: [...own, ...companions, flag, value],
        names: byValue ? [flag, value] : [flag],
      });
    // A value from the environment passes the same check as the flag's; what differs is that
    // the error names the variable, which the same code does for every flag: once per command.
    const value = values[0];
    if (
      environment === undefined &&
      value !== undefined &&
      option.envVar !== undefined &&
      !base.includes(flag) &&
      own === base &&
      companions.length === 0
    )
      environment = {
        name: `${option.envVar}=${value}`,
        args: base,
        env: { [option.envVar]: value },
        names: byValue ? [option.envVar, value] : [option.envVar],
      };
  }
  return environment === undefined ? faults : [...faults, environment];
}

before(async () => {
  writeFileSync(FILES.fieldMap, FIELD_MAP);
  writeFileSync(FILES.encryptionConfig, ENCRYPTION_CONFIG);
  writeFileSync(FILES.badYaml, "resources: [1, 2\nkind: {\n");
  writeFileSync(FILES.list, "- one\n- two\n");
  writeFileSync(FILES.plain, "not a directory\n");
  mkdirSync(FILES.runDir);
  mkdirSync(FILES.dataDir);
  await (await openRepository(`sqlite://${join(FILES.dataDir, "store.db")}`)).close();
  const keyring = await runCli(
    ["keygen", ...LOCAL_KEYRING, "--keyring", FILES.keyring],
    WITH_MASTER_KEY,
  );
  assert.equal(keyring.code, 0, keyring.stderr);
});
after(() => rmSync(directory, { recursive: true, force: true }));

describe("CLI contract: the walk covers the whole program", () => {
  test("every command has a good invocation here, and every invocation a command", () => {
    assert.deepEqual(
      LEAVES.map((leaf) => leaf.path).sort(),
      Object.keys(INVOCATIONS).sort(),
      "describe the new command in INVOCATIONS (or drop the entry of a removed one)",
    );
  });

  test("every kind of value an option shows has its bad values here", () => {
    const kinds = new Set(
      LEAVES.flatMap((leaf) => leaf.command.options.map(kindOf)).filter(
        (kind): kind is string => kind !== undefined,
      ),
    );
    assert.deepEqual(
      [...kinds].filter((kind) => !Object.hasOwn(BAD_VALUES, kind)),
      [],
      "add the new kind's bad values to BAD_VALUES (null when any text will do)",
    );
  });
});

for (const leaf of LEAVES) {
  const invocation = INVOCATIONS[leaf.path];
  if (invocation === undefined) continue;
  const path = leaf.path.split(" ");
  const run = (args: readonly string[], env: NodeJS.ProcessEnv = {}) =>
    runCli([...path, ...args], { ...invocation.env, ...env }, 30_000, invocation.stdin ?? "");

  describe(`CLI contract: kms-envelope ${leaf.path}`, { concurrency: 2 }, () => {
    test("the good invocation gets past every check of its flags", async () => {
      const result = await run(invocation.args);
      assert.equal(result.code, invocation.baseline.code, result.stderr);
      const names = invocation.baseline.names;
      if (names !== undefined) assertContract(result, result.code ?? -1, [names], "baseline");
    });

    for (const fault of faultsOf(leaf, invocation))
      test(`${fault.name}: exit 2, one line naming it`, async () => {
        assertContract(await run(fault.args, fault.env), 2, fault.names, fault.name);
      });
  });
}

describe("CLI contract: commands that take a command", { concurrency: 2 }, () => {
  for (const path of groupsOf(program)) {
    const shown = ["kms-envelope", ...path].join(" ");
    test(`${shown} alone: exit 2, one line naming its commands`, async () => {
      assertContract(await runCli(path), 2, [`name a command of ${shown}:`], shown);
    });
    test(`${shown} no-such-command: exit 2, one line naming it`, async () => {
      assertContract(await runCli([...path, "no-such-command"]), 2, ["no-such-command"], shown);
    });
  }
});

describe("CLI contract: runtime failures exit 1 with one line", { concurrency: 2 }, () => {
  const suite = suiteDaemon();
  const kmsConfig = at("kms-encryption.yaml");
  before(() =>
    writeFileSync(
      kmsConfig,
      ENCRYPTION_CONFIG.replace(
        /- aesgcm:[\s\S]*?- identity/,
        `- kms: { apiVersion: v2, name: kms-envelope, endpoint: "unix://${suite.daemon.socketPath}" }\n      - identity`,
      ),
    ),
  );

  test("a daemon that is not running: status names the socket and what to do", async () => {
    const socket = at("nobody.sock");
    assertContract(
      await runCli(["status", "--socket", socket, "--timeout", "1s"]),
      1,
      [`no answer from unix:${socket}: cannot connect (connect ENOENT ${socket})`],
      "status",
    );
  });

  test("a running daemon: status prints its version and the KMS API version", async () => {
    const result = await runCli(["status", "--socket", suite.daemon.socketPath, "--json"]);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(JSON.parse(result.stdout), {
      version: PACKAGE_VERSION,
      runtime: "kms-envelope",
      apiVersion: "v2",
      healthz: "ok",
      keyId: suite.daemon.keyId,
    });
    const text = await runCli(["status", "--socket", suite.daemon.socketPath]);
    assert.equal(
      text.stdout,
      `version: ${PACKAGE_VERSION}\nkms_api: v2\nhealthz: ok\nkey_id:  ${suite.daemon.keyId}\n`,
    );
  });

  test("a field-service resource while the daemon is down: the daemon and what to do", async () => {
    assertContract(
      await runCli(
        ["encrypt", "--resource", "people", "--id", "p1", "--workspace", "w1", ...FIELD_LAYER],
        {},
        30_000,
        '{"email":"a@example.com"}',
      ),
      1,
      ["check that the daemon is running and healthy (kms-envelope status --socket"],
      "encrypt",
    );
  });

  test("a value the daemon's field service cannot open: its reason alone", async () => {
    const people = ["--resource", "people", "--workspace", "w1", ...FIELD_LAYER];
    const socket = ["--socket", suite.daemon.socketPath];
    const email = '{"email":"a@example.com"}';
    const sealed = await runCli(["encrypt", ...people, "--id", "p1", ...socket], {}, 30_000, email);
    assert.equal(sealed.code, 0, sealed.stderr);
    // The record id is authenticated with the field: under another id it does not open.
    const moved = await runCli(
      ["decrypt", ...people, "--id", "p2", ...socket],
      {},
      30_000,
      sealed.stdout,
    );
    assertContract(moved, 1, ["decryption failed"], "decrypt");
    assert.doesNotMatch(moved.stderr, /running and healthy/);
  });

  test("a value the KMS plugin refuses to decrypt: its reason, not the plugin's health", async () => {
    const object = encodeEncryptedObject({
      encryptedData: Buffer.alloc(40, 1),
      keyId: suite.daemon.keyId,
      encryptedDekSource: Buffer.alloc(60, 2),
      annotations: new Map(),
      dekSourceType: DekSourceType.HkdfSha256XNonceAesGcmSeed,
    });
    const refused = await runCli(
      ["etcd", "decode", "--encryption-config", kmsConfig, "--key", "/registry/secrets/ns/db"],
      {},
      30_000,
      Buffer.concat([Buffer.from("k8s:enc:kms:v2:kms-envelope:"), object]),
    );
    assertContract(refused, 1, ["Decrypt failed with INVALID_ARGUMENT"], "etcd decode");
    assert.doesNotMatch(refused.stderr, /running and healthy/);
  });

  test("a record that is not there: store get names it", async () => {
    assertContract(
      await runCli(["store", "get", "--resource", "notes", "--id", "n9", ...FIELD_LAYER, ...STORE]),
      1,
      ['no record "n9" of notes'],
      "store get",
    );
  });

  test("a value that does not decrypt: etcd decode says so", async () => {
    const value = Buffer.concat([Buffer.from("k8s:enc:aesgcm:v1:k1:"), Buffer.alloc(40, 1)]);
    assertContract(
      await runCli(
        [
          "etcd",
          "decode",
          "--encryption-config",
          FILES.encryptionConfig,
          "--key",
          "/c/secrets/ns/db",
        ],
        {},
        30_000,
        value,
      ),
      1,
      ["decryption failed"],
      "etcd decode",
    );
  });
});
