import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { FakeProvider } from "../../../providers/fake.js";
import { deriveKeyId } from "../../../src/crypto/derivation.js";
import { KmsEnvelopeError } from "../../../src/errors.js";
import {
  addVersion,
  generateVersion,
  promoteVersion,
  retireVersion,
} from "../../../src/keys/keyring-edits.js";
import {
  type Keyring,
  type KeyringVersion,
  primaryVersion,
  readKeyring,
  validateKeyring,
  writeKeyring,
} from "../../../src/keys/keyring-file.js";

const version = (keyId: string, state: KeyringVersion["state"]): KeyringVersion => ({
  keyId,
  provider: "aws",
  keyRef: "arn:aws:kms:eu-west-1:111122223333:key/k",
  wrappedKey: Buffer.from(keyId).toString("base64"),
  created: "2026-11-22T10:00:00.000Z",
  state,
});
const keyringOf = (...versions: KeyringVersion[]): Keyring => ({
  apiVersion: "kms-envelope.io/v1",
  kind: "Keyring",
  versions,
});

function invalid(detail: RegExp) {
  return (error: unknown) =>
    error instanceof KmsEnvelopeError &&
    error.code === "INVALID_CONFIG" &&
    detail.test(error.message);
}

describe("keyring file validation", () => {
  test("a keyring with one primary and distinct key ids is valid", () => {
    const keyring = keyringOf(
      version("aws:a", "primary"),
      version("aws:b", "active"),
      version("aws:c", "retired"),
    );
    assert.deepEqual(validateKeyring(keyring, "k.yaml"), keyring);
    assert.equal(primaryVersion(keyring).keyId, "aws:a");
  });

  test("no primary, or two primaries, is refused naming versions", () => {
    assert.throws(
      () => validateKeyring(keyringOf(version("aws:a", "active")), "k.yaml"),
      invalid(
        /^keyring k\.yaml versions: must have exactly one primary version, found 0 \(fix the keyring file\)$/,
      ),
    );
    assert.throws(
      () =>
        validateKeyring(
          keyringOf(version("aws:a", "primary"), version("aws:b", "primary")),
          "k.yaml",
        ),
      invalid(/found 2/),
    );
  });

  test("a reused key id is refused: a key id is never reused", () => {
    assert.throws(
      () =>
        validateKeyring(
          keyringOf(version("aws:a", "primary"), version("aws:a", "active")),
          "k.yaml",
        ),
      invalid(/versions\.1\.keyId: duplicates aws:a/),
    );
  });

  test("unknown fields, a bad state, bad base64 and a wrong kind are refused with their path", () => {
    const cases: [unknown, RegExp][] = [
      [{ ...keyringOf(version("aws:a", "primary")), extra: 1 }, /Unrecognized key/],
      [
        keyringOf({ ...version("aws:a", "primary"), state: "current" as "active" }),
        /versions\.0\.state/,
      ],
      [
        keyringOf({ ...version("aws:a", "primary"), wrappedKey: "not base64!" }),
        /versions\.0\.wrappedKey: must be standard base64/,
      ],
      [{ ...keyringOf(version("aws:a", "primary")), kind: "Secret" }, /kind/],
      [keyringOf(), /versions: must hold at least one version/],
    ];
    for (const [document, detail] of cases)
      assert.throws(() => validateKeyring(document, "k.yaml"), invalid(detail));
  });

  test("a provider name the registry would never load, and a key id kube-apiserver would refuse, are refused here too", () => {
    const longName = `p${"x".repeat(32)}`;
    assert.throws(
      () => validateKeyring(keyringOf({ ...version("aws:a", "primary"), provider: longName }), "k"),
      invalid(/versions\.0\.provider: must be a provider name/),
    );
    // 600 characters, but 1200 bytes of UTF-8: the apiserver counts bytes.
    assert.throws(
      () => validateKeyring(keyringOf(version(`aws:${"é".repeat(600)}`, "primary")), "k"),
      invalid(/versions\.0\.keyId: keyID is 1204 bytes, more than the 1024 allowed/),
    );
  });
});

describe("keyring file I/O", () => {
  let directory: string;
  before(async () => {
    directory = await mkdtemp(join(tmpdir(), "keyring-"));
  });
  after(() => rm(directory, { recursive: true, force: true }));

  test("writes are atomic YAML (0640) that reads back equal, with no temporary file left", async () => {
    const path = join(directory, "keyring.yaml");
    const keyring = keyringOf(version("aws:a", "primary"));
    await writeKeyring(path, keyring);
    assert.deepEqual((await readKeyring(path)).keyring, keyring);
    assert.equal((await stat(path)).mode & 0o777, 0o640);
    const { readdir } = await import("node:fs/promises");
    assert.deepEqual(await readdir(directory), ["keyring.yaml"]);
  });

  test("a missing file and invalid YAML are INVALID_CONFIG naming the file", async () => {
    await assert.rejects(
      readKeyring(join(directory, "missing.yaml")),
      invalid(/keyring .*missing\.yaml: cannot be read: .*\(check the path and its permissions\)/),
    );
    await writeFile(join(directory, "bad.yaml"), "versions: [unclosed");
    await assert.rejects(
      readKeyring(join(directory, "bad.yaml")),
      invalid(/keyring .*bad\.yaml: is not valid YAML/),
    );
  });

  test("an invalid keyring is never written", async () => {
    const path = join(directory, "never.yaml");
    await assert.rejects(
      writeKeyring(path, keyringOf(version("aws:a", "active"))),
      invalid(/exactly one primary/),
    );
    await assert.rejects(readFile(path), { code: "ENOENT" });
  });
});

describe("keyring edits", () => {
  test("generateVersion wraps a fresh key whose id matches, proving the wrap by unwrapping", async () => {
    const provider = new FakeProvider({ name: "aws" });
    const generated = await generateVersion(
      provider,
      "arn:k",
      "primary",
      new Date("2026-01-02T03:04:05Z"),
    );
    assert.match(generated.keyId, /^aws:[A-Za-z0-9_-]{16}$/);
    assert.equal(generated.created, "2026-01-02T03:04:05.000Z");
    assert.deepEqual(provider.calls, { wrapKey: 1, unwrapKey: 1, checkHealth: 0 });
    const key = await provider.unwrapKey(Buffer.from(generated.wrappedKey, "base64"), {
      keyId: generated.keyId,
    });
    assert.equal(deriveKeyId("aws", key), generated.keyId);
  });

  test("a provider failure while generating surfaces its error and writes nothing", async () => {
    const provider = new FakeProvider({ name: "aws" }).script("user");
    await assert.rejects(generateVersion(provider, "arn:k", "primary"), { errorClass: "user" });
  });

  test("adding a primary demotes the old one to active; adding a duplicate key id is refused", () => {
    const keyring = keyringOf(version("aws:a", "primary"));
    const rotated = addVersion(keyring, version("aws:b", "primary"));
    assert.deepEqual(
      rotated.versions.map((entry) => [entry.keyId, entry.state]),
      [
        ["aws:a", "active"],
        ["aws:b", "primary"],
      ],
    );
    assert.throws(
      () => addVersion(rotated, version("aws:a", "active")),
      invalid(/already in the keyring \(a key id is never reused/),
    );
  });

  test("promote swaps the primary; retire refuses the primary and unknown ids", () => {
    const keyring = keyringOf(version("aws:a", "primary"), version("aws:b", "active"));
    const promoted = promoteVersion(keyring, "aws:b");
    assert.deepEqual(
      promoted.versions.map((entry) => entry.state),
      ["active", "primary"],
    );
    const retired = retireVersion(promoted, "aws:a");
    assert.deepEqual(
      retired.versions.map((entry) => entry.state),
      ["retired", "primary"],
    );
    assert.throws(() => retireVersion(retired, "aws:b"), invalid(/is the primary version/));
    assert.throws(
      () => retireVersion(retired, "aws:zzz"),
      invalid(/key id aws:zzz: is not in the keyring \(give one it has: aws:a, aws:b\)/),
    );
    assert.throws(() => promoteVersion(retired, "aws:a"), invalid(/is retired/));
  });

  test("the key material in a generated version is random each time", async () => {
    const provider = new FakeProvider({ name: "aws", masterKeys: [randomBytes(32)] });
    const first = await generateVersion(provider, "arn:k", "primary");
    const second = await generateVersion(provider, "arn:k", "primary");
    assert.notEqual(first.keyId, second.keyId);
  });
});
