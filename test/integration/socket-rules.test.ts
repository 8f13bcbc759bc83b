import assert from "node:assert/strict";
import { lstat, mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import {
  call,
  DaemonProcess,
  dial,
  newMasterKey,
  runCli,
  temporaryDirectory,
} from "./support/daemon-process.js";

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
    const clients = dial(socketPath);
    assert.equal((await call<{ healthz: string }>(clients.kmsV2, "Status", {})).healthz, "ok");
    clients.close();
    assert.equal(await second.stop(), 0);
  });

  test("a regular file at the socket path is refused and left untouched", async () => {
    const path = join(directory.path, "precious.txt");
    await writeFile(path, "do not delete\n");
    const before = await stat(path);
    const result = await runCli(["serve", "--socket", path, "--http-address", "off"], env);
    assert.equal(result.code, 1);
    assert.equal(
      result.stderr.trim(),
      `kms-envelope: ${path} exists and is a regular file or other non-socket: refusing to replace it; choose another --socket or remove it yourself`,
    );
    assert.equal(await readFile(path, "utf8"), "do not delete\n");
    assert.equal((await stat(path)).mtimeMs, before.mtimeMs);
  });

  test("a directory at the socket path is refused and left untouched", async () => {
    const path = join(directory.path, "a-directory");
    await mkdir(path);
    await writeFile(join(path, "inside"), "x");
    const result = await runCli(["serve", "--socket", path, "--http-address", "off"], env);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /exists and is a directory: refusing to replace it/);
    assert.equal(await readFile(join(path, "inside"), "utf8"), "x");
  });

  test("a second daemon on a served socket is refused and the first keeps serving", async () => {
    const socketPath = join(directory.path, "shared.sock");
    const first = await DaemonProcess.start({ socketPath, env });
    const result = await runCli(["serve", "--socket", socketPath, "--http-address", "off"], env);
    assert.equal(result.code, 1);
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
      'kms-envelope: --socket "unix:///@kms-envelope": abstract sockets are not supported; give a socket file path\n',
    );
  });
});
