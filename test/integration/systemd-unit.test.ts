/**
 * deploy/systemd/kms-envelope.service as systemd and the daemon will meet it: systemd's offline
 * verifier accepts it, its sandbox settings are the ones docs/bootstrap.md promises, and its
 * command lines run against the real CLI, built and laid out like /usr/lib/kms-envelope.
 *
 * No systemd runs as PID 1 here, so the sandbox itself cannot be entered. Instead the daemon runs
 * under strace, and the system calls, socket families and writes it makes are checked against
 * what the unit's filter, RestrictAddressFamilies= and ProtectSystem=strict leave it: a call the
 * filter refuses, or a write outside RuntimeDirectory, would otherwise only show on a real node,
 * as a plugin that does not start and an apiserver waiting for it.
 */
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { copyFile, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { parse as parseYaml } from "yaml";
import { PACKAGE_ROOT } from "../../src/package-info.js";
import { cleanEnvironment } from "../support/daemon-launcher.js";
import {
  type CliCommand,
  call,
  DaemonProcess,
  dial,
  newMasterKey,
  runCli,
} from "../support/daemon-process.js";

const run = promisify(execFile);

const UNIT_FILE = join(PACKAGE_ROOT, "deploy/systemd/kms-envelope.service");
const ENV_FILE = join(PACKAGE_ROOT, "deploy/systemd/kms-envelope.env");
// The paths the unit runs; the test puts this machine's node and a fresh build in their place.
const UNIT_NODE = "/usr/bin/node";
const UNIT_INSTALL = "/usr/lib/kms-envelope";
const UNIT_MAIN = `${UNIT_INSTALL}/dist/src/cli/main.js`;

/** A unit file's settings, section by section, in file order. */
type Unit = Map<string, [key: string, value: string][]>;

/** Reads a unit file as systemd does: `[Section]`, `Key=value`, comments, backslash continuations. */
function parseUnit(text: string): Unit {
  const unit: Unit = new Map();
  let section: [string, string][] | undefined;
  let pending = "";
  for (const raw of text.split("\n")) {
    if (/^\s*[#;]/.test(raw)) continue;
    // systemd joins a line ending in a backslash to the next one, the backslash becoming a space.
    const line = pending + raw;
    if (line.endsWith("\\")) {
      pending = `${line.slice(0, -1)} `;
      continue;
    }
    pending = "";
    if (line.trim() === "") continue;
    const header = /^\[([^\]]+)\]$/.exec(line.trim());
    if (header?.[1] !== undefined) {
      section = [];
      unit.set(header[1], section);
      continue;
    }
    const setting = /^([A-Za-z0-9]+)=(.*)$/.exec(line.trim());
    assert.ok(section !== undefined && setting !== null, `not a unit file line: ${line}`);
    section.push([setting[1] ?? "", (setting[2] ?? "").trim()]);
  }
  return unit;
}

function values(unit: Unit, section: string, key: string): string[] {
  return (unit.get(section) ?? []).filter(([name]) => name === key).map(([, value]) => value);
}

/** A setting given exactly once: where systemd lets a later line win, a second one would hide. */
function single(unit: Unit, section: string, key: string): string {
  const found = values(unit, section, key);
  assert.equal(found.length, 1, `[${section}] ${key}= is given ${found.length} times, not once`);
  return found[0] ?? "";
}

/**
 * The words of an Exec line. The unit keeps to plain words and '…' quoting, with no `$`
 * variables, `%` specifiers or escapes, so these words are exactly the argv systemd runs.
 */
function commandWords(line: string): string[] {
  assert.doesNotMatch(line, /[$%\\"]/, `${line}: only plain words and '…' quoting`);
  const words = [...line.matchAll(/'([^']*)'|(\S+)/g)].map((match) => match[1] ?? match[2] ?? "");
  assert.doesNotMatch(words[0] ?? "", /^[-@:+!|]/, `${line}: no exec prefixes`);
  return words;
}

/** `--name=value` of a command line (the unit spells every flag that way). */
function flag(words: string[], name: string): string {
  const found = words.filter((word) => word.startsWith(`--${name}=`));
  assert.equal(found.length, 1, `--${name}= appears ${found.length} times`);
  return (found[0] ?? "").slice(name.length + 3);
}

/** Seconds of a systemd or CLI duration such as 45s, 2min or 5m. */
function seconds(duration: string): number {
  const match = /^(\d+)(s|m|min)$/.exec(duration);
  assert.ok(match !== null, `duration ${duration}`);
  return Number(match[1]) * (match[2] === "s" ? 1 : 60);
}

/** The system calls a SystemCallFilter= group stands for, nested groups expanded. */
async function syscallGroup(name: string): Promise<string[]> {
  const { stdout } = await run("systemd-analyze", ["syscall-filter", name]);
  const entries = stdout
    .split("\n")
    .slice(1)
    .map((line) => line.replace(/#.*/, "").trim())
    .filter((entry) => entry !== "");
  const expanded = await Promise.all(
    entries.map((entry) => (entry.startsWith("@") ? syscallGroup(entry) : [entry])),
  );
  return expanded.flat();
}

/** What the unit's SystemCallFilter= lines allow: the first lists, each `~` line takes away. */
async function allowedSyscalls(lines: string[]): Promise<Set<string>> {
  assert.ok(lines.length > 0 && !lines[0]?.startsWith("~"), "the filter is an allow list");
  const allowed = new Set<string>();
  for (const line of lines) {
    const denied = line.startsWith("~");
    for (const item of line.replace(/^~/, "").split(/\s+/)) {
      const calls = item.startsWith("@") ? await syscallGroup(item) : [item];
      for (const call of calls) {
        if (denied) allowed.delete(call);
        else allowed.add(call);
      }
    }
  }
  return allowed;
}

/** What an strace -f log shows: system calls made, socket families opened, paths changed. */
function readTrace(text: string): { calls: Set<string>; families: Set<string>; written: string[] } {
  const calls = new Set<string>();
  const families = new Set<string>();
  const written: string[] = [];
  const changesPath =
    /^(?:mkdir|mkdirat|rmdir|unlink|unlinkat|rename|renameat2?|link|linkat|symlink|symlinkat|chmod|fchmodat|chown|lchown|fchownat|truncate|utimensat|mknod|mknodat)$/;
  for (const line of text.split("\n")) {
    const entry = /^\d+\s+([a-z0-9_]+)\((.*)$/.exec(line);
    if (entry === null) continue;
    const [, name = "", rest = ""] = entry;
    calls.add(name);
    const family = name === "socket" ? /^AF_([A-Z0-9]+)/.exec(rest) : null;
    if (family?.[1] !== undefined) families.add(`AF_${family[1]}`);
    const paths = [...rest.matchAll(/"([^"]*)"/g)].map((match) => match[1] ?? "");
    const opensForWriting =
      (name === "open" || name === "openat" || name === "creat") &&
      /O_(?:WRONLY|RDWR|CREAT|TRUNC)/.test(rest);
    if (changesPath.test(name) || opensForWriting) written.push(...paths);
    if (name === "bind" && rest.includes("AF_UNIX")) written.push(...paths);
  }
  return { calls, families, written };
}

describe("deploy/systemd/kms-envelope.service", () => {
  let unit: Unit;
  let unitText: string;
  let work: string;
  let build: string;
  let execStart: string[];
  let execStartPost: string[];

  before(async () => {
    unitText = await readFile(UNIT_FILE, "utf8");
    unit = parseUnit(unitText);
    execStart = commandWords(single(unit, "Service", "ExecStart"));
    execStartPost = commandWords(single(unit, "Service", "ExecStartPost"));
    work = await mkdtemp(join(tmpdir(), "kms-envelope-systemd-"));
    // The layout the unit expects under /usr/lib/kms-envelope, as the image has it in /app.
    build = join(work, "lib");
    await mkdir(build);
    await copyFile(join(PACKAGE_ROOT, "package.json"), join(build, "package.json"));
    for (const name of ["proto", "node_modules"])
      await symlink(join(PACKAGE_ROOT, name), join(build, name));
    await run(join(PACKAGE_ROOT, "node_modules/.bin/tsc"), [
      "-p",
      join(PACKAGE_ROOT, "tsconfig.build.json"),
      "--outDir",
      join(build, "dist"),
    ]);
  });
  after(() => (work === undefined ? undefined : rm(work, { recursive: true, force: true })));

  /** Text with the unit's node and installation replaced by this machine's. */
  const localized = (text: string): string =>
    text.replaceAll(UNIT_NODE, process.execPath).replaceAll(UNIT_INSTALL, build);

  test("systemd-analyze verify accepts it without a word", async () => {
    // verify insists that every Exec program exists, so it checks a copy naming this machine's
    // node and build; nothing else changes. It prints nothing for this unit: no line of its
    // output is known to be harmless (a missing kubelet.service is fine for Before= and
    // WantedBy=, and verify says nothing about it), so any output fails the test, warnings
    // included, since verify warns and still exits 0 for, say, a misspelt setting.
    const directory = join(work, "verify");
    await mkdir(directory);
    const copy = join(directory, "kms-envelope.service");
    await writeFile(copy, localized(unitText));
    const result = await run("systemd-analyze", ["verify", copy]).catch(
      (error: { code: number; stdout: string; stderr: string }) => error,
    );
    assert.equal(`${result.stdout}${result.stderr}`, "");
    assert.equal("code" in result ? result.code : 0, 0);
  });

  test("systemd-analyze security rates its exposure 2.0 or lower", async () => {
    // 1.3 with systemd 252; the margin is for newer versions, which add checks.
    const result = await run("systemd-analyze", [
      "security",
      "--offline=yes",
      "--threshold=20",
      "--no-pager",
      UNIT_FILE,
    ]).catch((error: { code: number; stdout: string }) => error);
    assert.equal("code" in result ? result.code : 0, 0, result.stdout);
  });

  test("its sandbox: no privilege, nothing writable but the socket's directory, no core or swap", () => {
    const expected: [section: string, key: string, value: string][] = [
      ["Service", "Type", "exec"],
      ["Service", "DynamicUser", "yes"],
      ["Service", "CapabilityBoundingSet", ""],
      ["Service", "AmbientCapabilities", ""],
      ["Service", "NoNewPrivileges", "yes"],
      ["Service", "ProtectSystem", "strict"],
      ["Service", "ProtectHome", "yes"],
      ["Service", "PrivateTmp", "yes"],
      ["Service", "PrivateDevices", "yes"],
      ["Service", "ProtectKernelTunables", "yes"],
      ["Service", "ProtectKernelModules", "yes"],
      ["Service", "ProtectKernelLogs", "yes"],
      ["Service", "ProtectControlGroups", "yes"],
      ["Service", "ProtectClock", "yes"],
      ["Service", "RestrictNamespaces", "yes"],
      ["Service", "RestrictSUIDSGID", "yes"],
      ["Service", "LockPersonality", "yes"],
      ["Service", "UMask", "0077"],
      ["Service", "LimitCORE", "0"],
      ["Service", "MemorySwapMax", "0"],
      ["Service", "SystemCallArchitectures", "native"],
      ["Service", "SystemCallErrorNumber", "EPERM"],
      ["Service", "Restart", "on-failure"],
      ["Service", "RestartPreventExitStatus", "2"],
      ["Unit", "StartLimitIntervalSec", "0"],
    ];
    for (const [section, key, value] of expected)
      assert.equal(single(unit, section, key), value, `[${section}] ${key}=`);
    assert.match(single(unit, "Service", "MemoryMax"), /^\d+[KMG]$/);
    assert.ok(
      seconds(single(unit, "Service", "RestartSec")) >= 1,
      "RestartSec= of a second or more",
    );
    assert.match(values(unit, "Service", "SystemCallFilter")[0] ?? "", /(^| )@system-service( |$)/);
    assert.deepEqual(values(unit, "Service", "MemoryDenyWriteExecute"), [], "V8 needs W+X memory");
    for (const key of ["ReadWritePaths", "BindPaths", "SupplementaryGroups"])
      assert.deepEqual(values(unit, "Service", key), [], `${key}= widens the sandbox`);
    // Every other setting once: systemd lets the last of several win, silently.
    const lists = new Set(["SystemCallFilter", "Before", "After", "Wants", "WantedBy"]);
    for (const [section, settings] of unit) {
      for (const [key] of settings) if (!lists.has(key)) single(unit, section, key);
    }
  });

  test("it starts before kube-apiserver's units, and enabling it makes them pull it in", () => {
    const before = values(unit, "Unit", "Before").flatMap((value) => value.split(/\s+/));
    const wantedBy = values(unit, "Install", "WantedBy").flatMap((value) => value.split(/\s+/));
    for (const name of ["kubelet.service", "k3s.service", "rke2-server.service"]) {
      assert.ok(before.includes(name), `Before= ${name}`);
      assert.ok(wantedBy.includes(name), `WantedBy= ${name}`);
    }
    assert.ok(wantedBy.includes("multi-user.target"));
  });

  test("the socket is the EncryptionConfiguration's endpoint, in RuntimeDirectory, reachable through group root", async () => {
    assert.deepEqual(
      execStart.slice(0, 3),
      [UNIT_NODE, UNIT_MAIN, "serve"],
      "the built entry point",
    );
    const socket = flag(execStart, "socket");
    assert.equal(dirname(socket), `/run/${single(unit, "Service", "RuntimeDirectory")}`);
    const configuration = parseYaml(
      await readFile(join(PACKAGE_ROOT, "config/encryption-configuration.yaml"), "utf8"),
    ) as { resources: { providers: { kms?: { endpoint: string } }[] }[] };
    const endpoints = configuration.resources.flatMap((rule) =>
      rule.providers.flatMap((provider) => (provider.kms ? [provider.kms.endpoint] : [])),
    );
    // /var/run is a symbolic link to /run on every systemd distribution.
    assert.deepEqual(endpoints, [`unix://${socket.replace(/^\/run\//, "/var/run/")}`]);
    // kube-apiserver runs as root: the group bits let it in without a capability, the other bits
    // keep everyone else out, and the directory lets group root through as well (systemd also
    // keeps it behind the root-only /run/private, since the user is dynamic).
    assert.equal(flag(execStart, "socket-mode"), "0660");
    assert.equal(single(unit, "Service", "Group"), "root");
    assert.equal(single(unit, "Service", "RuntimeDirectoryMode"), "0750");
    assert.equal(single(unit, "Service", "RuntimeDirectoryPreserve"), "yes");
    // Readiness asks the same socket; the stop timeout outlasts the daemon's drain.
    assert.deepEqual(execStartPost.slice(0, 2), ["/bin/sh", "-c"]);
    assert.ok(
      (execStartPost[2] ?? "")
        .split(/\s+/)
        .join(" ")
        .includes(`${UNIT_NODE} ${UNIT_MAIN} status --socket=${socket} `),
      "ExecStartPost asks `status` on the daemon's socket",
    );
    assert.ok(
      seconds(single(unit, "Service", "TimeoutStopSec")) >
        seconds(flag(execStart, "shutdown-timeout")),
      "TimeoutStopSec= outlasts --shutdown-timeout",
    );
  });

  test("the example environment names only documented variables, and as shipped stops the daemon with exit 2", async () => {
    const text = await readFile(ENV_FILE, "utf8");
    const main = join(build, "dist/src/cli/main.js");
    const help = await runCli(["serve", "--help"], {}, 20_000, undefined, [process.execPath, main]);
    const readme = await readFile(join(PACKAGE_ROOT, "README.md"), "utf8");
    const named = [...text.matchAll(/^#?([A-Z][A-Z0-9_]*)=/gm)].map((match) => match[1] ?? "");
    assert.ok(named.length > 0);
    for (const name of named) {
      if (name.startsWith("KMS_ENVELOPE_")) assert.ok(help.stdout.includes(`env: ${name}`), name);
      else assert.ok(readme.includes(name), `${name} is not documented in README.md`);
    }
    // What systemd would set from it and from Environment=, for the unit's own command line.
    const assigned = Object.fromEntries(
      [
        ...[...text.matchAll(/^([A-Z][A-Z0-9_]*)=(.*)$/gm)].map((m) => [m[1], m[2]]),
        ...values(unit, "Service", "Environment").map((value) => value.split("=", 2)),
      ].map(([name, value]) => [name ?? "", value ?? ""]),
    );
    assert.deepEqual(Object.keys(assigned).sort(), ["ENCRYPTION_MASTER_KEY", "NODE_ENV"]);
    const args = localized(execStart.slice(2).join("\n"))
      .split("\n")
      .map((word) => (word.startsWith("--socket=") ? `--socket=${join(work, "unset.sock")}` : word))
      .map((word) => (word.startsWith("--http-address=") ? "--http-address=off" : word));
    const result = await runCli(args, assigned, 20_000, undefined, [process.execPath, main]);
    assert.equal(result.code, 2, result.stderr);
    assert.match(result.stderr, /ENCRYPTION_MASTER_KEY is not set/);
  });

  test("ExecStartPost keeps waiting while the socket does not answer", async () => {
    const [shell = "", option = "", script = ""] = execStartPost;
    const missing = join(work, "nobody-serves-here.sock");
    const waiting = spawn(
      shell,
      [option, localized(script).replaceAll(flag(execStart, "socket"), missing)],
      { env: cleanEnvironment(), stdio: "ignore", detached: true },
    );
    const exited = new Promise<number | null>((resolve) => waiting.on("exit", resolve));
    const stillWaiting = await Promise.race([
      exited.then(() => false),
      new Promise<boolean>((resolve) => setTimeout(() => resolve(true), 2500)),
    ]);
    // The whole group: the shell and the `status` or `sleep` it is running.
    if (waiting.pid !== undefined) process.kill(-waiting.pid, "SIGKILL");
    await exited;
    assert.ok(stillWaiting, "ExecStartPost gave up before the daemon answered");
  });

  describe("its command lines, from a build laid out like /usr/lib/kms-envelope, under strace", () => {
    let runtimeDirectory: string;
    let socket: string;
    let cli: CliCommand;
    let daemon: DaemonProcess;
    let daemonPid: number;

    before(async () => {
      runtimeDirectory = join(work, "run");
      await mkdir(runtimeDirectory, { mode: 0o750 });
      socket = join(runtimeDirectory, "kms-envelope.sock");
      cli = [process.execPath, join(build, "dist/src/cli/main.js")];
      const [node, main, serve, ...flags] = localized(execStart.join("\n")).split("\n");
      assert.deepEqual([node, main, serve], [...cli, "serve"]);
      const environment = Object.fromEntries(
        values(unit, "Service", "Environment").map((value) => value.split("=", 2)),
      ) as NodeJS.ProcessEnv;
      // The launcher names the socket and a free probe port itself; every other flag is the unit's.
      daemon = await DaemonProcess.start({
        socketPath: socket,
        env: { ...environment, ENCRYPTION_MASTER_KEY: newMasterKey() },
        args: flags.filter((word) => !/^--(socket|http-address)=/.test(word)),
        command: ["strace", "-f", "-qq", "-o", join(work, "serve.trace"), "--", ...cli],
        logLevel: flag(execStart, "log-level"),
        startTimeoutMs: 60_000,
      });
      const starting = daemon.logRecords().find((record) => record.msg === "kms-envelope starting");
      daemonPid = Number(starting?.pid);
      assert.ok(daemonPid > 0, "the daemon logs its pid");
    });
    after(() => {
      // strace detaches when it is killed, so the daemon is ended by its own pid.
      if (daemonPid > 0) {
        try {
          process.kill(daemonPid, "SIGKILL");
        } catch {
          // Already gone: the test stopped it.
        }
      }
    });

    test("ExecStart serves KMS v2 and the field service with the unit's flags", async () => {
      assert.equal((await stat(socket)).mode & 0o777, 0o660);
      const clients = dial(socket);
      try {
        const status = await call<{ healthz: string; key_id: string }>(clients.kmsV2, "Status", {});
        assert.equal(status.healthz, "ok");
        const seed = Buffer.alloc(32, 7);
        const sealed = await call<{ ciphertext: Buffer; key_id: string }>(
          clients.kmsV2,
          "Encrypt",
          { plaintext: seed, uid: "systemd-unit-test" },
        );
        const opened = await call<{ plaintext: Buffer }>(clients.kmsV2, "Decrypt", {
          ciphertext: sealed.ciphertext,
          key_id: sealed.key_id,
          uid: "systemd-unit-test",
          annotations: {},
        });
        assert.deepEqual(opened.plaintext, seed);
      } finally {
        clients.close();
      }
      // A field-service batch, so the worker threads' system calls are in the trace too.
      const encrypt = await runCli(
        [
          ...["encrypt", "--fields", join(PACKAGE_ROOT, "config/field-map-atelyaos.yaml")],
          ...["--resource", "messages", "--id", "m1", "--workspace", "ws-1", "--socket", socket],
        ],
        {},
        20_000,
        '{"id":"m1","content":"sealed by the daemon"}\n',
        cli,
      );
      assert.equal(encrypt.code, 0, encrypt.stderr);
      assert.match(encrypt.stdout, /"content":"kmse:v1:/);
    });

    test("ExecStartPost returns once the daemon answers", async () => {
      const [shell, option, script = ""] = execStartPost;
      const socketInUnit = flag(execStart, "socket");
      await run(
        "strace",
        [
          ...["-f", "-qq", "-o", join(work, "post.trace"), "--"],
          ...[shell ?? "", option ?? "", localized(script).replaceAll(socketInUnit, socket)],
        ],
        { env: cleanEnvironment(), timeout: 30_000 },
      );
    });

    test("SIGTERM drains it: exit 0, socket removed", async () => {
      process.kill(daemonPid, "SIGTERM");
      assert.equal(await daemon.exited(), 0, daemon.lines.slice(-5).join("\n"));
      await assert.rejects(stat(socket), { code: "ENOENT" });
    });

    test("every system call made is one the unit's SystemCallFilter= allows", async () => {
      const allowed = await allowedSyscalls(values(unit, "Service", "SystemCallFilter"));
      for (const file of ["serve.trace", "post.trace"]) {
        const { calls } = readTrace(await readFile(join(work, file), "utf8"));
        assert.ok(calls.has("epoll_pwait") || calls.has("epoll_wait"), `${file} was traced`);
        assert.deepEqual(
          [...calls].filter((name) => !allowed.has(name)).sort(),
          [],
          `${file}: refused by the filter`,
        );
      }
    });

    test("sockets only of the families RestrictAddressFamilies= allows", async () => {
      const allowed = new Set(single(unit, "Service", "RestrictAddressFamilies").split(/\s+/));
      for (const file of ["serve.trace", "post.trace"]) {
        const { families } = readTrace(await readFile(join(work, file), "utf8"));
        assert.ok(families.has("AF_UNIX"), `${file}: the gRPC socket was traced`);
        assert.deepEqual(
          [...families].filter((family) => !allowed.has(family)),
          [],
          file,
        );
      }
    });

    test("writes only in RuntimeDirectory (and /dev/null), all ProtectSystem=strict leaves", async () => {
      for (const file of ["serve.trace", "post.trace"]) {
        const { written } = readTrace(await readFile(join(work, file), "utf8"));
        // The daemon makes sure its socket's directory exists; under systemd it already does,
        // and mkdir answers EEXIST before it would answer EROFS for the read-only /run.
        const outside = written.filter(
          (path) =>
            ![runtimeDirectory, "/dev/null"].includes(path) &&
            !path.startsWith(`${runtimeDirectory}/`),
        );
        assert.deepEqual(outside, [], `${file}: written outside ${runtimeDirectory}`);
      }
      const { written } = readTrace(await readFile(join(work, "serve.trace"), "utf8"));
      assert.ok(written.includes(socket), "the socket's creation was traced");
    });
  });
});
