import assert from "node:assert/strict";
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { DEV_KEY_FILE_NAME, loadOrCreateDevKey } from "../../../src/cli/dev-key.js";
import { KmsEnvelopeError } from "../../../src/errors.js";

let root: string;

before(async () => {
  root = await mkdtemp(join(tmpdir(), "kms-envelope-dev-key-"));
});

after(async () => {
  await rm(root, { recursive: true, force: true });
});

describe("loadOrCreateDevKey", () => {
  test("the first call creates a 0600 file holding base64 of 32 random bytes", async () => {
    const runDir = join(root, "created", "nested");
    const result = await loadOrCreateDevKey(runDir);
    assert.equal(result.created, true);
    assert.equal(result.path, join(runDir, DEV_KEY_FILE_NAME));
    assert.equal((await stat(result.path)).mode & 0o777, 0o600);
    assert.equal((await stat(runDir)).mode & 0o777, 0o700, "a created run dir is private");
    assert.equal(Buffer.from(result.key, "base64").length, 32);
    assert.equal(Buffer.from(result.key, "base64").toString("base64"), result.key);
    assert.equal(await readFile(result.path, "utf8"), `${result.key}\n`);
  });

  test("the second call reuses the same key instead of replacing it", async () => {
    const runDir = join(root, "reused");
    const first = await loadOrCreateDevKey(runDir);
    const before = await readFile(first.path);
    const second = await loadOrCreateDevKey(runDir);
    assert.equal(second.created, false);
    assert.equal(second.key, first.key);
    assert.equal(second.path, first.path);
    assert.deepEqual(await readFile(first.path), before);
  });

  test("two run directories get different keys", async () => {
    const one = await loadOrCreateDevKey(join(root, "one"));
    const two = await loadOrCreateDevKey(join(root, "two"));
    assert.notEqual(one.key, two.key);
  });

  test("a key file readable by others (chmod 0644) is refused with advice to chmod 600", async () => {
    const runDir = join(root, "exposed");
    const { path, key } = await loadOrCreateDevKey(runDir);
    await chmod(path, 0o644);
    await assert.rejects(loadOrCreateDevKey(runDir), (error: unknown) => {
      assert.ok(error instanceof KmsEnvelopeError);
      assert.equal(error.code, "INVALID_MASTER_KEY");
      assert.ok(error.message.includes(`chmod 600 ${path}`), error.message);
      assert.match(error.message, /mode 644/);
      assert.ok(!error.message.includes(key), "the key is never in the message");
      return true;
    });
    assert.equal(await readFile(path, "utf8"), `${key}\n`, "the file is left as it was");
  });

  test("a group-readable key file (0640) is refused too", async () => {
    const runDir = join(root, "group");
    const { path } = await loadOrCreateDevKey(runDir);
    await chmod(path, 0o640);
    await assert.rejects(loadOrCreateDevKey(runDir), { code: "INVALID_MASTER_KEY" });
  });

  test("an existing 0600 key file written by the operator is used as is", async () => {
    const runDir = join(root, "operator");
    await loadOrCreateDevKey(runDir);
    const own = Buffer.alloc(32, 7).toString("base64");
    await writeFile(join(runDir, DEV_KEY_FILE_NAME), `${own}\n`, { mode: 0o600 });
    const result = await loadOrCreateDevKey(runDir);
    assert.equal(result.key, own);
    assert.equal(result.created, false);
  });
});
