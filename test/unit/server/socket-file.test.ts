import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import {
  lstat,
  mkdir,
  mkdtemp,
  readFile,
  rename,
  rm,
  stat,
  symlink,
  unlink,
  utimes,
  writeFile,
} from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { KmsEnvelopeError } from "../../../src/errors.js";
import {
  prepareSocketFile,
  removeSocketFile,
  secureSocketFile,
  socketIdentity,
} from "../../../src/server/socket-file.js";

let root: string;

before(async () => {
  root = await mkdtemp(join(tmpdir(), "kms-envelope-socket-"));
});

after(async () => {
  await rm(root, { recursive: true, force: true });
});

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Leaves a socket file nobody serves, as a crashed daemon would: a child process binds it and is
 * killed with SIGKILL, so nothing unlinks the file (net.Server.close() would).
 */
async function staleSocket(path: string): Promise<void> {
  const child: ChildProcess = spawn(
    process.execPath,
    [
      "-e",
      "require('node:net').createServer().listen(process.argv[1], () => console.log('ready'))",
      path,
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  await once(child.stdout as NodeJS.ReadableStream, "data");
  child.kill("SIGKILL");
  await once(child, "exit");
  assert.ok((await lstat(path)).isSocket(), "the killed child left its socket file behind");
}

async function liveSocket(path: string): Promise<Server> {
  const server = createServer((connection) => connection.destroy());
  server.listen(path);
  await once(server, "listening");
  return server;
}

function refusedNotSocket(path: string, kind: string) {
  return (error: unknown): boolean => {
    assert.ok(error instanceof KmsEnvelopeError);
    assert.equal(error.code, "SOCKET_PATH_NOT_SOCKET");
    assert.ok(error.message.startsWith(`${path} exists and is ${kind}`), error.message);
    assert.match(error.message, /choose another --socket or remove it yourself/);
    return true;
  };
}

describe("prepareSocketFile", () => {
  test("a missing path is fine and its missing parent directory is created 0700", async () => {
    const directory = join(root, "fresh", "nested");
    const path = join(directory, "kms.sock");
    await prepareSocketFile(path);
    assert.equal((await stat(directory)).mode & 0o777, 0o700);
    assert.equal(await exists(path), false);
  });

  test("a regular file is refused and left untouched (content and mtime)", async () => {
    const path = join(root, "regular.sock");
    await writeFile(path, "precious data");
    const past = new Date("2020-01-02T03:04:05Z");
    await utimes(path, past, past);
    await assert.rejects(prepareSocketFile(path), refusedNotSocket(path, "a regular file"));
    assert.equal(await readFile(path, "utf8"), "precious data");
    assert.equal((await stat(path)).mtimeMs, past.getTime());
  });

  test("a directory is refused and left untouched", async () => {
    const path = join(root, "directory.sock");
    await mkdir(path);
    await writeFile(join(path, "inside"), "keep me");
    const before = await stat(path);
    await assert.rejects(prepareSocketFile(path), refusedNotSocket(path, "a directory"));
    const afterwards = await stat(path);
    assert.ok(afterwards.isDirectory());
    assert.equal(afterwards.mtimeMs, before.mtimeMs);
    assert.equal(await readFile(join(path, "inside"), "utf8"), "keep me");
  });

  test("a symbolic link is refused and left untouched, even one pointing at a socket", async () => {
    const target = join(root, "link-target.sock");
    await staleSocket(target);
    const path = join(root, "link.sock");
    await symlink(target, path);
    await assert.rejects(prepareSocketFile(path), refusedNotSocket(path, "a symbolic link"));
    assert.ok((await lstat(path)).isSymbolicLink());
    assert.ok((await lstat(target)).isSocket());
  });

  test("a stale socket left by a killed process is removed", async () => {
    const path = join(root, "stale.sock");
    await staleSocket(path);
    await prepareSocketFile(path);
    assert.equal(await exists(path), false);
  });

  test("a socket another process still serves is refused with SOCKET_IN_USE and kept", async () => {
    const path = join(root, "live.sock");
    const server = await liveSocket(path);
    try {
      await assert.rejects(prepareSocketFile(path), (error: unknown) => {
        assert.ok(error instanceof KmsEnvelopeError);
        assert.equal(error.code, "SOCKET_IN_USE");
        assert.ok(error.message.startsWith(`${path} is served by another running process`));
        return true;
      });
      assert.ok((await lstat(path)).isSocket());
    } finally {
      server.close();
      await once(server, "close");
    }
  });
});

describe("secureSocketFile", () => {
  test("applies the configured mode to the socket file", async () => {
    const path = join(root, "mode.sock");
    await staleSocket(path);
    await secureSocketFile(path, 0o640, undefined);
    assert.equal((await lstat(path)).mode & 0o777, 0o640);
    await secureSocketFile(path, 0o600, undefined);
    assert.equal((await lstat(path)).mode & 0o777, 0o600);
  });

  test("applies the configured owner", async () => {
    const path = join(root, "owner.sock");
    await staleSocket(path);
    const uid = process.getuid?.() ?? 0;
    const gid = process.getgid?.() ?? 0;
    await secureSocketFile(path, 0o600, { uid, gid });
    const stats = await lstat(path);
    assert.equal(stats.uid, uid);
    assert.equal(stats.gid, gid);
  });
});

describe("removeSocketFile", () => {
  test("removes the socket file this process bound", async () => {
    const path = join(root, "mine.sock");
    await staleSocket(path);
    const identity = await socketIdentity(path);
    assert.notEqual(identity, undefined);
    await removeSocketFile(path, identity);
    assert.equal(await exists(path), false);
  });

  test("leaves a file that replaced ours (different inode) in place", async () => {
    const path = join(root, "replaced.sock");
    await staleSocket(path);
    const identity = await socketIdentity(path);
    // Built beside ours and renamed over it, so it cannot reuse our freed inode number.
    const replacement = join(root, "replacement.sock");
    await staleSocket(replacement);
    await rename(replacement, path);
    assert.notEqual(await socketIdentity(path), identity);
    await removeSocketFile(path, identity);
    assert.ok((await lstat(path)).isSocket());
  });

  test("leaves a new socket that reused our inode number in place", async () => {
    const path = join(root, "reused.sock");
    await staleSocket(path);
    const identity = await socketIdentity(path);
    await unlink(path);
    await staleSocket(path);
    await removeSocketFile(path, identity);
    assert.ok((await lstat(path)).isSocket(), "another process's socket must survive our shutdown");
  });

  test("does nothing for an unknown identity or a missing file", async () => {
    const path = join(root, "unknown.sock");
    await staleSocket(path);
    await removeSocketFile(path, undefined);
    assert.ok(await exists(path));
    assert.equal(await socketIdentity(join(root, "missing.sock")), undefined);
    await removeSocketFile(join(root, "missing.sock"), "1:2:3");
  });
});
