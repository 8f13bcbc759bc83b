import assert from "node:assert/strict";
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { DEV_KEY_FILE_NAME, ensureDevKeyFile } from "../../../src/cli/dev-key.js";
import { deriveKeyId } from "../../../src/crypto/derivation.js";
import { KmsEnvelopeError } from "../../../src/errors.js";
import { DevKeySource } from "../../../src/keys/dev-key-source.js";

let root: string;

before(async () => {
  root = await mkdtemp(join(tmpdir(), "kms-envelope-dev-key-"));
});

after(async () => {
  await rm(root, { recursive: true, force: true });
});

async function keyText(path: string): Promise<string> {
  return (await readFile(path, "utf8")).trim();
}

describe("ensureDevKeyFile", () => {
  test("the first call creates a 0600 file holding base64 of 32 random bytes", async () => {
    const runDir = join(root, "created", "nested");
    const result = await ensureDevKeyFile(runDir);
    assert.equal(result.created, true);
    assert.equal(result.path, join(runDir, DEV_KEY_FILE_NAME));
    assert.equal((await stat(result.path)).mode & 0o777, 0o600);
    assert.equal((await stat(runDir)).mode & 0o777, 0o700, "a created run dir is private");
    const key = await keyText(result.path);
    assert.equal(Buffer.from(key, "base64").length, 32);
    assert.equal(Buffer.from(key, "base64").toString("base64"), key);
    assert.equal(await readFile(result.path, "utf8"), `${key}\n`);
  });

  test("the second call reuses the same key instead of replacing it", async () => {
    const runDir = join(root, "reused");
    const first = await ensureDevKeyFile(runDir);
    const before = await readFile(first.path);
    const second = await ensureDevKeyFile(runDir);
    assert.equal(second.created, false);
    assert.equal(second.path, first.path);
    assert.deepEqual(await readFile(first.path), before);
  });

  test("two run directories get different keys", async () => {
    const one = await ensureDevKeyFile(join(root, "one"));
    const two = await ensureDevKeyFile(join(root, "two"));
    assert.notEqual(await keyText(one.path), await keyText(two.path));
  });

  test("a key file readable by others (chmod 0644) is refused with advice to chmod 600", async () => {
    const runDir = join(root, "exposed");
    const { path } = await ensureDevKeyFile(runDir);
    const key = await keyText(path);
    await chmod(path, 0o644);
    await assert.rejects(ensureDevKeyFile(runDir), (error: unknown) => {
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
    const { path } = await ensureDevKeyFile(runDir);
    await chmod(path, 0o640);
    await assert.rejects(ensureDevKeyFile(runDir), { code: "INVALID_MASTER_KEY" });
  });
});

describe("DevKeySource", () => {
  test("loads the file's key as a local: version, and an operator's own 0600 file as is", async () => {
    const runDir = join(root, "operator");
    const { path } = await ensureDevKeyFile(runDir);
    const own = Buffer.alloc(32, 7);
    await writeFile(path, `${own.toString("base64")}\n`, { mode: 0o600 });
    const keys = await new DevKeySource(path).load();
    assert.equal(keys.primary.keyId, deriveKeyId("local", own));
    assert.deepEqual(keys.keyIds, [deriveKeyId("local", own)]);
    keys.dispose();
  });

  test("a damaged key file is INVALID_MASTER_KEY naming the file, never its content", async () => {
    const path = join(root, "damaged-key");
    await writeFile(path, "c2hvcnQ=\n", { mode: 0o600 });
    await assert.rejects(new DevKeySource(path).load(), (error: unknown) => {
      assert.ok(error instanceof KmsEnvelopeError);
      assert.equal(error.code, "INVALID_MASTER_KEY");
      assert.equal(
        error.message,
        `${path} must be base64 of exactly 32 bytes: generate one with \`kms-envelope keygen\``,
      );
      return true;
    });
  });
});
