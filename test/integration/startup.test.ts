import assert from "node:assert/strict";
import { chmod, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import {
  DaemonProcess,
  newMasterKey,
  runCli,
  temporaryDirectory,
} from "../support/daemon-process.js";

describe("start-up: master key and flags", () => {
  let directory: Awaited<ReturnType<typeof temporaryDirectory>>;

  before(async () => {
    directory = await temporaryDirectory();
  });
  after(() => directory.remove());

  const serve = (env: NodeJS.ProcessEnv, extra: string[] = []) =>
    runCli(
      ["serve", "--socket", join(directory.path, "kms.sock"), "--http-address", "off", ...extra],
      env,
    );

  test("without a key and without --dev, one line names the variable and the exit code is 2", async () => {
    const result = await serve({});
    assert.equal(result.code, 2);
    assert.equal(
      result.stderr,
      "kms-envelope: ENCRYPTION_MASTER_KEY is not set: export it (`export ENCRYPTION_MASTER_KEY=$(kms-envelope keygen)`) or start with --dev\n",
    );
  });

  test("a key that is not base64 or not 32 bytes is refused without echoing it", async () => {
    const cases = [
      ["not base64 at all!!", /ENCRYPTION_MASTER_KEY is not standard base64/],
      [
        Buffer.alloc(16, 7).toString("base64"),
        /ENCRYPTION_MASTER_KEY must be base64 of exactly 32 bytes/,
      ],
      [
        Buffer.alloc(33, 7).toString("base64"),
        /ENCRYPTION_MASTER_KEY must be base64 of exactly 32 bytes/,
      ],
    ] as const;
    for (const [key, message] of cases) {
      const result = await serve({ ENCRYPTION_MASTER_KEY: key });
      assert.equal(result.code, 2, key);
      assert.match(result.stderr, message);
      assert.ok(
        !result.stderr.includes(key) && !result.stdout.includes(key),
        "the key must not be echoed",
      );
    }
  });

  test("a bad ENCRYPTION_MASTER_KEY_PREVIOUS entry is refused naming its position", async () => {
    const result = await serve({
      ENCRYPTION_MASTER_KEY: newMasterKey(),
      ENCRYPTION_MASTER_KEY_PREVIOUS: `${newMasterKey()},short`,
    });
    assert.equal(result.code, 2);
    assert.match(result.stderr, /ENCRYPTION_MASTER_KEY_PREVIOUS entry 2 is not standard base64/);
  });

  test("bad flag values are refused naming the flag", async () => {
    const cases: [string[], RegExp][] = [
      [["--socket-mode", "777x"], /--socket-mode: must be an octal mode/],
      [["--shutdown-timeout", "soon"], /--shutdown-timeout: must be a duration/],
      [["--log-level", "loud"], /--log-level/],
      [["--http-address", "nowhere"], /--http-address: must be HOST:PORT/],
      [["--bogus"], /unknown option '--bogus'/],
    ];
    for (const [flags, message] of cases) {
      const result = await serve({ ENCRYPTION_MASTER_KEY: newMasterKey() }, flags);
      assert.equal(result.code, 2, flags.join(" "));
      assert.match(result.stderr, message);
    }
  });

  test("environment variables configure serve, and flags override them", async () => {
    const socketPath = join(directory.path, "from-env.sock");
    const daemon = await DaemonProcess.start({
      socketPath: join(directory.path, "from-flag.sock"),
      env: {
        ENCRYPTION_MASTER_KEY: newMasterKey(),
        KMS_ENVELOPE_SOCKET: socketPath,
        KMS_ENVELOPE_SOCKET_MODE: "0640",
      },
    });
    assert.equal((await stat(join(directory.path, "from-flag.sock"))).mode & 0o777, 0o640);
    await assert.rejects(stat(socketPath), { code: "ENOENT" });
    assert.equal(await daemon.stop(), 0);
  });

  test("--config fills settings by flag name; the environment and flags win over it", async () => {
    const socketPath = join(directory.path, "from-config.sock");
    const configPath = join(directory.path, "serve.yaml");
    await writeFile(configPath, `socket-mode: "0640"\nworkspace: from-file\n`);
    const workspaceOf = (daemon: DaemonProcess) =>
      daemon.logRecords().find((record) => record.msg === "kms-envelope serving")?.workspace;

    const fromFile = await DaemonProcess.start({
      socketPath,
      env: { ENCRYPTION_MASTER_KEY: newMasterKey() },
      args: ["--config", configPath],
    });
    assert.equal(
      fromFile.logRecords().find((record) => record.msg === "kms-envelope serving")?.secretbox,
      "sodium-native",
      "the serving line names the secretbox backend, native where it loads",
    );
    assert.equal(
      (await stat(socketPath)).mode & 0o777,
      0o640,
      "the file sets what nothing else did",
    );
    assert.equal(workspaceOf(fromFile), "from-file");
    assert.equal(await fromFile.stop(), 0);

    const overridden = await DaemonProcess.start({
      socketPath,
      env: { ENCRYPTION_MASTER_KEY: newMasterKey(), KMS_ENVELOPE_WORKSPACE: "from-env" },
      args: ["--config", configPath, "--socket-mode", "0600"],
    });
    assert.equal((await stat(socketPath)).mode & 0o777, 0o600, "a flag wins over the file");
    assert.equal(workspaceOf(overridden), "from-env", "the environment wins over the file");
    assert.equal(await overridden.stop(), 0);
  });

  test("--config refuses an unknown setting naming it", async () => {
    const configPath = join(directory.path, "typo.yaml");
    await writeFile(configPath, "sokcet: /tmp/x.sock\n");
    const result = await serve({ ENCRYPTION_MASTER_KEY: newMasterKey() }, ["--config", configPath]);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /config file .*typo\.yaml: unknown setting "sokcet"/);
  });

  test("--config refuses a file nested too deeply to be a config, with one line and exit 2", async () => {
    const configPath = join(directory.path, "deep.yaml");
    await writeFile(configPath, `${"[".repeat(2000)}${"]".repeat(2000)}\n`);
    const result = await serve({ ENCRYPTION_MASTER_KEY: newMasterKey() }, ["--config", configPath]);
    assert.equal(result.code, 2);
    assert.equal(
      result.stderr,
      `kms-envelope: config file ${configPath}: nests collections more than 64 levels deep (it is not a configuration file: check its contents)\n`,
    );
  });

  test("--dev creates a 0600 development key, warns loudly, and reuses it on restart", async () => {
    const runDir = join(directory.path, "dev-run");
    const socketPath = join(runDir, "kms.sock");
    const first = await DaemonProcess.start({
      socketPath,
      env: {},
      args: ["--dev", "--run-dir", runDir],
    });
    const keyFile = join(runDir, "dev-master-key");
    assert.equal((await stat(keyFile)).mode & 0o777, 0o600);
    const warning = first.logRecords().find((record) => record.level === "warn");
    assert.match(String(warning?.msg), /DEVELOPMENT MODE.*Never use --dev in production/);
    assert.equal(await first.stop(), 0);
    const second = await DaemonProcess.start({
      socketPath,
      env: {},
      args: ["--dev", "--run-dir", runDir],
    });
    assert.equal(second.keyId, first.keyId, "the same development key is reused");
    assert.equal(await second.stop(), 0);
    const key = (await readFile(keyFile, "utf8")).trim();
    assert.ok(!first.lines.join("\n").includes(key), "the development key never reaches the log");
  });

  test("--dev refuses a development key file that others can read", async () => {
    const runDir = join(directory.path, "dev-run");
    await chmod(join(runDir, "dev-master-key"), 0o644);
    const result = await runCli(
      ["serve", "--dev", "--run-dir", runDir, "--http-address", "off"],
      {},
    );
    assert.equal(result.code, 2);
    assert.match(result.stderr, /is readable by other users \(mode 644\): run `chmod 600 /);
  });

  test("--dev together with ENCRYPTION_MASTER_KEY is refused", async () => {
    const result = await serve({ ENCRYPTION_MASTER_KEY: newMasterKey() }, [
      "--dev",
      "--run-dir",
      join(directory.path, "dev2"),
    ]);
    assert.equal(result.code, 2);
    assert.match(
      result.stderr,
      /--dev: ENCRYPTION_MASTER_KEY is set too, and --dev brings its own key \(drop --dev or ENCRYPTION_MASTER_KEY\)/,
    );
  });

  test("keygen prints a fresh base64 32-byte key each time", async () => {
    const first = await runCli(["keygen"]);
    const second = await runCli(["keygen"]);
    assert.equal(first.code, 0);
    assert.equal(Buffer.from(first.stdout.trim(), "base64").length, 32);
    assert.notEqual(first.stdout, second.stdout);
  });

  test("status against a socket nobody serves fails in one line with exit code 1", async () => {
    const result = await runCli([
      "status",
      "--socket",
      join(directory.path, "nobody.sock"),
      "--timeout",
      "1s",
    ]);
    assert.equal(result.code, 1);
    assert.match(
      result.stderr,
      /^kms-envelope: no answer from unix:.*nobody\.sock: cannot connect \(connect ENOENT \S+nobody\.sock\); is the daemon running\? \(start it, or point --socket at its socket\)\n$/,
    );
  });

  test("status refuses a socket path over 107 bytes, as serve does, with exit code 2", async () => {
    const result = await runCli(["status", "--socket", `/tmp/${"s".repeat(98)}.sock`]);
    assert.equal(result.code, 2);
    assert.match(
      result.stderr,
      /^kms-envelope: --socket: \S+ is 108 bytes long; Unix socket paths are limited to 107 bytes \(choose a shorter path or --run-dir\)\n$/,
    );
  });

  test("--help works for every command", async () => {
    for (const command of [[], ["serve"], ["status"], ["keygen"]]) {
      const result = await runCli([...command, "--help"]);
      assert.equal(result.code, 0, command.join(" "));
      assert.match(result.stdout, /^Usage: kms-envelope/);
    }
  });
});
