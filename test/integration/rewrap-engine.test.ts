/**
 * Rewrap through the engine route with the shipped Obot field map: credentials (the whole
 * secret map as one value) and users sealed by a secretbox EncryptionConfiguration, then the
 * key rotated the Kubernetes way (new key first, old key second), rewrapped with the CLI, and
 * the old key removed. No daemon: the engine encrypts in-process.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { openFieldLayer } from "../../src/fields/open-field-layer.js";
import { PACKAGE_ROOT } from "../../src/package-info.js";
import { CredentialStore } from "../../src/store/credential-store.js";
import { EncryptedStore } from "../../src/store/encrypted-store.js";
import { openRepository } from "../../src/store/open-repository.js";
import type { RecordRepository } from "../../src/store/repository.js";
import type { RewrapSummary } from "../../src/store/rewrap.js";
import { runCli, temporaryDirectory } from "../support/daemon-process.js";

const OBOT_MAP = join(PACKAGE_ROOT, "config/field-map-obot.yaml");
const USERS = "users.obot.obot.ai";
const CREDENTIALS = 120;

function secretboxConfig(keys: { name: string; secret: string }[]): string {
  return `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: ["*.obot.obot.ai", credentials]
    providers:
      - secretbox:
          keys:
${keys.map((key) => `            - { name: ${key.name}, secret: "${key.secret}" }`).join("\n")}
`;
}

describe("rewrap through the engine (secretbox key rotation, Obot field map, SQLite)", () => {
  let directory: Awaited<ReturnType<typeof temporaryDirectory>>;
  let storeUrl: string;
  let configPath: string;
  let repository: RecordRepository;
  const key1 = { name: "key1", secret: randomBytes(32).toString("base64") };
  const key2 = { name: "key2", secret: randomBytes(32).toString("base64") };
  const cli = (...args: string[]) =>
    runCli(
      ["rewrap", "--store", storeUrl, "--fields", OBOT_MAP, "--config", configPath, ...args],
      {},
      60_000,
    );
  const layer = () => openFieldLayer({ fieldMapPath: OBOT_MAP, encryptionConfigPath: configPath });

  before(async () => {
    directory = await temporaryDirectory();
    storeUrl = `sqlite://${join(directory.path, "store.db")}`;
    configPath = join(directory.path, "encryption-configuration.yaml");
    await writeFile(configPath, secretboxConfig([key1]));
    repository = await openRepository(storeUrl);
    const codec = await layer();
    try {
      const store = new EncryptedStore({ repository, codec });
      const credentials = new CredentialStore(store, codec);
      for (let index = 0; index < CREDENTIALS; index++) {
        await credentials.put(
          {
            name: `cred-${index}`,
            context: "mcp/github",
            secrets: { token: `ghs-${index}`, refresh: `r-${index}` },
          },
          { subjectId: `user-${index % 4}` },
        );
      }
      await store.create(USERS, {
        id: "u-1",
        subjectId: "user-1",
        document: { email: "ada@example.com", username: "ada", plan: "pro" },
      });
    } finally {
      await codec.close();
    }
  });
  after(async () => {
    await repository?.close();
    await directory?.remove();
  });

  test("after the key is rotated, a dry run counts the old key's fields and writes nothing", async () => {
    await writeFile(configPath, secretboxConfig([key2, key1]));
    const result = await cli("--dry-run", "--json");
    assert.equal(result.code, 0, result.stderr);
    const summary = JSON.parse(result.stdout) as RewrapSummary;
    assert.equal(summary.dryRun, true);
    assert.deepEqual(
      summary.resources.map((entry) => [entry.resource, entry.recordsNeeding]),
      [
        ["credentials", CREDENTIALS],
        [USERS, 1],
      ],
    );
    assert.deepEqual(summary.resources[0]?.current, [
      { path: "secrets", provider: "secretbox", keyId: "key2" },
    ]);
    assert.deepEqual(summary.resources[0]?.staleFields, [
      { path: "secrets", provider: "secretbox", keyId: "key1", fields: CREDENTIALS },
    ]);
    const [one] = await repository.getMany("credentials", [
      (await repository.recordIds("credentials", "", 1))[0] as string,
    ]);
    assert.equal(one?.version, 1, "nothing written");
  });

  test("rewrap moves every field to the new key; with the old key removed all still decrypt", async () => {
    const result = await cli("--batch-size", "32");
    assert.equal(result.code, 0, result.stderr);
    assert.match(
      result.stdout,
      new RegExp(
        `^credentials: ${CREDENTIALS} records not under the current writer; rewrapped ${CREDENTIALS} records \\(${CREDENTIALS} fields\\), 0 changed meanwhile and were re-read, 0 could not be opened, 0 left$`,
        "m",
      ),
    );
    assert.match(result.stdout, /^ {2}secrets → secretbox key2 \(120 under secretbox key1\)$/m);
    // Not a terminal: plain progress lines on stderr, no value in them.
    assert.match(result.stderr, /^rewrap: credentials 120\/120 records \(100%\), \d+ records\/s$/m);
    assert.ok(!/ghs-|ada@example/.test(result.stdout + result.stderr), "no plaintext in output");

    // Retire key1: only key2 is configured now.
    await writeFile(configPath, secretboxConfig([key2]));
    const codec = await layer();
    try {
      const store = new EncryptedStore({ repository, codec });
      const credentials = new CredentialStore(store, codec);
      for (let index = 0; index < CREDENTIALS; index++) {
        const credential = await credentials.get(`cred-${index}`, "mcp/github");
        assert.deepEqual(credential?.secrets, { token: `ghs-${index}`, refresh: `r-${index}` });
        assert.equal(credential?.version, 2);
      }
      const user = await store.read(USERS, "u-1");
      assert.deepEqual(user?.document, { email: "ada@example.com", username: "ada", plan: "pro" });
      assert.equal(user?.stale, false);
    } finally {
      await codec.close();
    }
    const again = await cli("--json");
    assert.equal(again.code, 0, again.stderr);
    const summary = JSON.parse(again.stdout) as RewrapSummary;
    assert.deepEqual(
      summary.resources.map((entry) => entry.recordsNeeding + entry.recordsRewrapped),
      [0, 0],
      "a second run finds nothing to do",
    );
  });

  test("bad flags are one-line errors with exit code 2", async () => {
    const batch = await cli("--batch-size", "0");
    assert.equal(batch.code, 2);
    assert.match(batch.stderr, /--batch-size.*must be a whole number from 1 to 5000/);
    const store = await runCli(
      ["rewrap", "--store", "mysql://db/x", "--fields", OBOT_MAP, "--config", configPath],
      {},
    );
    assert.equal(store.code, 2);
    assert.match(
      store.stderr,
      /^kms-envelope: --store: names no supported backend \(write sqlite:\/\/\/PATH or postgres:\/\//,
    );
  });
});
