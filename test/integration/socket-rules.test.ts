import assert from "node:assert/strict";
import { lstat, mkdir, readdir, readFile, stat, writeFile } from "node:fs/promises";
import { type AddressInfo, createServer } from "node:net";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import {
  call,
  DaemonProcess,
  dial,
  newMasterKey,
  runCli,
  temporaryDirectory,
} from "../support/daemon-process.js";

describe("socket rules (SPEC.md §4)", () => {
  let directory: Awaited<ReturnType<typeof temporaryDirectory>>;
  const env = { ENCRYPTION_MASTER_KEY: newMasterKey() };

  before(async () => {
    directory = await temporaryDirectory();
  });
  after(() => directory.remove());

  test("the socket is created with mode 0600 and removed on a clean exit", async () => {
    const socketPath = join(directory.path, "mode", "kms.sock");
    const daemon = await DaemonProcess.start({ socketPath, env });
    const stats = await lstat(socketPath);
    assert.ok(stats.isSocket());
    assert.equal(stats.mode & 0o777, 0o600);
    assert.equal(await daemon.stop("SIGTERM"), 0);
    await assert.rejects(lstat(socketPath), { code: "ENOENT" });
  });

  test("--socket-mode sets another mode, and SIGINT also exits cleanly", async () => {
    const socketPath = join(directory.path, "kms-0660.sock");
    const daemon = await DaemonProcess.start({ socketPath, env, args: ["--socket-mode", "0660"] });
    assert.equal((await lstat(socketPath)).mode & 0o777, 0o660);
    assert.equal(await daemon.stop("SIGINT"), 0);
  });

  test("a stale socket left by a killed daemon is replaced", async () => {
    const socketPath = join(directory.path, "stale.sock");
    const first = await DaemonProcess.start({ socketPath, env });
    await first.stop("SIGKILL");
    assert.ok((await lstat(socketPath)).isSocket(), "SIGKILL leaves the socket file behind");
    const second = await DaemonProcess.start({ socketPath, env });
    const takeover = second
      .logRecords()
      .find(
        (record) =>
          record.msg === "removed a stale socket left by a daemon that did not exit cleanly",
      );
    assert.equal(takeover?.level, "warn", "the takeover is logged");
    assert.equal(takeover?.socket, socketPath);
    const clients = dial(socketPath);
    assert.equal((await call<{ healthz: string }>(clients.kmsV2, "Status", {})).healthz, "ok");
    clients.close();
    assert.equal(await second.stop(), 0);
    const fresh = await DaemonProcess.start({ socketPath, env });
    assert.ok(
      !fresh.lines.some((line) => line.includes("removed a stale socket")),
      "a clean exit leaves nothing to take over",
    );
    assert.equal(await fresh.stop(), 0);
  });

  test("a socket whose directory is a file is refused with exit 2 naming --socket", async () => {
    const file = join(directory.path, "not-a-directory");
    await writeFile(file, "x");
    const socketPath = join(file, "kms.sock");
    const result = await runCli(["serve", "--socket", socketPath, "--http-address", "off"], env);
    assert.equal(result.code, 2);
    assert.equal(
      result.stderr,
      `kms-envelope: --socket: the directory ${file} of ${socketPath} is not a directory, or lies under a file (choose another --socket or fix the directory)\n`,
    );
  });

  test("a socket path over 107 bytes is refused with exit 2 and no stray socket anywhere", async () => {
    const nested = join(directory.path, "n".repeat(60));
    await mkdir(nested);
    const socketPath = join(nested, `${"k".repeat(120 - nested.length)}.sock`);
    const result = await runCli(["serve", "--socket", socketPath, "--http-address", "off"], env);
    assert.equal(result.code, 2);
    assert.match(
      result.stderr,
      /^kms-envelope: --socket: \S+ is \d+ bytes long; Unix socket paths are limited to 107 bytes \(choose a shorter path or --run-dir\)\n$/,
    );
    assert.deepEqual(await readdir(nested), [], "nothing was bound, truncated or not");
  });

  test("a probe port in use is refused with exit 2 naming --http-address, before the provider is asked", async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
    const { port } = blocker.address() as AddressInfo;
    const socketPath = join(directory.path, "port-taken.sock");
    try {
      const result = await runCli(
        ["serve", "--socket", socketPath, "--http-address", `127.0.0.1:${port}`],
        env,
      );
      assert.equal(result.code, 2);
      assert.match(
        result.stderr,
        new RegExp(
          `--http-address: 127\\.0\\.0\\.1:${port} is already in use by another process \\(choose a free loopback port, or "off" to disable the probes\\)`,
        ),
      );
      assert.ok(!result.stdout.includes("custody provider"), "the provider was never checked");
      await assert.rejects(lstat(socketPath), { code: "ENOENT" });
    } finally {
      blocker.close();
    }
  });

  test("a regular file at the socket path is refused (exit 2) and left untouched", async () => {
    const path = join(directory.path, "precious.txt");
    await writeFile(path, "do not delete\n");
    const before = await stat(path);
    const result = await runCli(["serve", "--socket", path, "--http-address", "off"], env);
    assert.equal(result.code, 2);
    assert.equal(
      result.stderr.trim(),
      `kms-envelope: ${path} exists and is a regular file or other non-socket: refusing to replace it; choose another --socket or remove it yourself`,
    );
    assert.equal(await readFile(path, "utf8"), "do not delete\n");
    assert.equal((await stat(path)).mtimeMs, before.mtimeMs);
  });

  test("a directory at the socket path is refused (exit 2) and left untouched", async () => {
    const path = join(directory.path, "a-directory");
    await mkdir(path);
    await writeFile(join(path, "inside"), "x");
    const result = await runCli(["serve", "--socket", path, "--http-address", "off"], env);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /exists and is a directory: refusing to replace it/);
    assert.equal(await readFile(join(path, "inside"), "utf8"), "x");
  });

  test("a second daemon on a served socket is refused (exit 2) and the first keeps serving", async () => {
    const socketPath = join(directory.path, "shared.sock");
    const first = await DaemonProcess.start({ socketPath, env });
    const result = await runCli(["serve", "--socket", socketPath, "--http-address", "off"], env);
    assert.equal(result.code, 2);
    assert.match(
      result.stderr,
      /is served by another running process \(or cannot be probed\): stop it first or choose another --socket/,
    );
    const clients = dial(socketPath);
    assert.equal((await call<{ healthz: string }>(clients.kmsV2, "Status", {})).healthz, "ok");
    clients.close();
    assert.equal(await first.stop(), 0);
  });

  test("an abstract socket name is refused with a one-line error and exit code 2", async () => {
    const result = await runCli(
      ["serve", "--socket", "unix:///@kms-envelope", "--http-address", "off"],
      env,
    );
    assert.equal(result.code, 2);
    assert.equal(
      result.stderr,
      'kms-envelope: --socket: abstract sockets such as "unix:///@kms-envelope" are not supported (give a socket file path)\n',
    );
  });
});
