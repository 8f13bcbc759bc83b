/**
 * `kms-envelope store put|get|list` as an operator runs them: the real CLI as a child process,
 * a real daemon on a Unix socket sealing field-service fields (AtelyaOS map) or serving as the
 * kms v2 plugin of engine fields (Obot map), and a real SQLite file, plus one round trip on
 * PostgreSQL. Also: read-only commands never create a store, and a closed stdout is quiet.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import Database from "better-sqlite3";
import { PACKAGE_ROOT } from "../../src/package-info.js";
import type { ListedRecord } from "../../src/store/record-listing.js";
import {
  runCli,
  runCliReadingOneLine,
  suiteDaemon,
  temporaryDirectory,
} from "../support/daemon-process.js";
import { type PostgresServer, startPostgres } from "../support/postgres-server.js";

const ATELYAOS_MAP = join(PACKAGE_ROOT, "config/field-map-atelyaos.yaml");
const OBOT_MAP = join(PACKAGE_ROOT, "config/field-map-obot.yaml");

const MESSAGES = [
  { id: "m1", owner: "ada", ws: "ws-a", title: "sync", content: "the launch moved to May" },
  { id: "m2", owner: "ada", ws: "ws-b", title: "hello", content: "salary review is Friday" },
  { id: "m3", owner: "bob", ws: "ws-a", title: "ping", content: "door code 4711" },
] as const;
const ndjson = (records: readonly object[]) =>
  records.map((record) => JSON.stringify(record)).join("\n");

describe("kms-envelope store put|get|list", () => {
  const suite = suiteDaemon();
  let directory: Awaited<ReturnType<typeof temporaryDirectory>>;
  let nextStore = 0;
  const newStorePath = () => join(directory.path, `store-${++nextStore}.db`);
  const env = () => ({ KMS_ENVELOPE_SOCKET: suite.daemon.socketPath });
  const messageFlags = (path: string) => [
    "--resource",
    "messages",
    "--fields",
    ATELYAOS_MAP,
    "--store",
    `sqlite://${path}`,
  ];
  const put = (path: string, input: string, ...extra: string[]) =>
    runCli(
      [
        "store",
        "put",
        ...messageFlags(path),
        "--subject-field",
        "owner",
        "--workspace-field",
        "ws",
        ...extra,
      ],
      env(),
      60_000,
      input,
    );
  const list = (path: string, ...extra: string[]) =>
    runCli(["store", "list", "--resource", "messages", "--store", `sqlite://${path}`, ...extra]);
  const listed = (stdout: string) =>
    stdout
      .trimEnd()
      .split("\n")
      .map((line) => JSON.parse(line) as ListedRecord);

  before(async () => {
    directory = await temporaryDirectory();
  });
  after(async () => {
    await directory?.remove();
  });

  test("put → list → get round trip through the daemon; the SQLite file holds only ciphertext", async () => {
    const path = newStorePath();
    const stored = await put(path, ndjson(MESSAGES));
    assert.equal(stored.code, 0, stored.stderr);
    assert.equal(stored.stderr, "stored 3 records in messages\n");
    assert.equal(stored.stdout, "");

    const database = new Database(path, { readonly: true });
    try {
      const row = database
        .prepare(
          "SELECT subject_id, workspace, document FROM kmse_records WHERE resource = ? AND id = ?",
        )
        .get("messages", "m1") as { subject_id: string; workspace: string; document: string };
      const document = JSON.parse(row.document) as Record<string, string>;
      assert.match(String(document.content), new RegExp(`^kmse:v1:${suite.daemon.keyId}:`));
      assert.equal(document.title, "sync", "unlisted fields stay plain");
      assert.deepEqual([row.subject_id, row.workspace], ["ada", "ws-a"]);
    } finally {
      database.close();
    }
    const bytes = Buffer.concat(
      [path, `${path}-wal`].filter((file) => existsSync(file)).map((file) => readFileSync(file)),
    );
    for (const message of MESSAGES)
      assert.ok(!bytes.includes(message.content), "no plaintext of an encrypted field on disk");

    const all = await list(path);
    assert.equal(all.code, 0, all.stderr);
    assert.equal(all.stderr, "");
    const records = listed(all.stdout);
    assert.deepEqual(
      records.map((record) => [record.id, record.subjectId, record.workspace, record.version]),
      [
        ["m1", "ada", "ws-a", 1],
        ["m2", "ada", "ws-b", 1],
        ["m3", "bob", "ws-a", 1],
      ],
    );
    assert.deepEqual(records[0]?.stamps, [
      {
        path: "content",
        route: "field-service",
        provider: "field-service",
        keyId: suite.daemon.keyId,
      },
    ]);
    for (const message of MESSAGES) assert.ok(!all.stdout.includes(message.content));
    const workspace = await list(path, "--workspace", "ws-a");
    assert.deepEqual(
      listed(workspace.stdout).map((record) => record.id),
      ["m1", "m3"],
    );

    const got = await runCli(["store", "get", ...messageFlags(path), "--id", "m2"], env());
    assert.equal(got.code, 0, got.stderr);
    assert.equal(got.stderr, "");
    assert.equal(got.stdout, `${JSON.stringify(MESSAGES[1])}\n`, "the document as it was put");
  });

  test("get of an unknown id, or of another workspace's record, is not found (exit 1)", async () => {
    const path = newStorePath();
    assert.equal((await put(path, ndjson(MESSAGES))).code, 0);
    const unknown = await runCli(["store", "get", ...messageFlags(path), "--id", "m9"], env());
    assert.equal(unknown.code, 1);
    assert.equal(
      unknown.stderr,
      'kms-envelope: no record "m9" of messages; kms-envelope store list --resource messages shows the ids\n',
    );
    assert.equal(unknown.stdout, "");
    const elsewhere = await runCli(
      ["store", "get", ...messageFlags(path), "--id", "m2", "--workspace", "ws-a"],
      env(),
    );
    assert.equal(elsewhere.code, 1);
    assert.match(
      elsewhere.stderr,
      /^kms-envelope: no record "m2" of messages in workspace "ws-a";/,
    );
    assert.ok(!elsewhere.stdout.includes(MESSAGES[1].content));
  });

  test("engine route: kms v2 through the daemon, the EncryptionConfiguration given by --encryption-config or its old name --config", async () => {
    const configPath = join(directory.path, "encryption-configuration.yaml");
    await writeFile(
      configPath,
      `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: ["*.obot.obot.ai"]
    providers:
      - kms: { apiVersion: v2, name: kms-envelope, endpoint: "unix://${suite.daemon.socketPath}", timeout: 3s }
`,
    );
    const path = newStorePath();
    const flags = [
      "--resource",
      "users.obot.obot.ai",
      "--fields",
      OBOT_MAP,
      "--store",
      `sqlite://${path}`,
    ];
    const user = { uid: "u-1", email: "ada@example.com", username: "ada", plan: "pro" };
    const stored = await runCli(
      ["store", "put", ...flags, "--encryption-config", configPath, "--id-field", "uid"],
      {},
      60_000,
      JSON.stringify(user),
    );
    assert.equal(stored.code, 0, stored.stderr);
    assert.equal(stored.stderr, "stored 1 record in users.obot.obot.ai\n");
    const stamps = listed(
      (
        await runCli([
          "store",
          "list",
          "--resource",
          "users.obot.obot.ai",
          "--store",
          `sqlite://${path}`,
        ])
      ).stdout,
    )[0]?.stamps;
    assert.deepEqual(
      stamps?.map((stamp) => [stamp.path, stamp.provider, stamp.keyId]),
      [
        ["email", "kms:v2:kms-envelope", suite.daemon.keyId],
        ["username", "kms:v2:kms-envelope", suite.daemon.keyId],
      ],
    );
    const got = await runCli(["store", "get", ...flags, "--config", configPath, "--id", "u-1"]);
    assert.equal(got.code, 0, got.stderr);
    assert.deepEqual(JSON.parse(got.stdout), user);
  });

  test("an id that exists stops put at its line (exit 1, the lines before it kept); --replace replaces it", async () => {
    const path = newStorePath();
    assert.equal((await put(path, ndjson(MESSAGES.slice(0, 1)))).code, 0);
    const again = await put(
      path,
      ndjson([MESSAGES[1], { ...MESSAGES[0], content: "changed" }, MESSAGES[2]]),
    );
    assert.equal(again.code, 1);
    assert.equal(
      again.stderr,
      'kms-envelope: line 2: messages "m1" exists already; pass --replace to replace it; the records of the lines before line 2 are stored (1), nothing from line 2 on: continue with tail -n +2\n',
    );
    assert.deepEqual(
      listed((await list(path)).stdout).map((record) => record.id),
      ["m1", "m2"],
    );

    const replaced = await put(path, ndjson([{ ...MESSAGES[0], content: "changed" }]), "--replace");
    assert.equal(replaced.code, 0, replaced.stderr);
    assert.equal(replaced.stderr, "stored 1 record in messages (1 replaced)\n");
    const got = await runCli(["store", "get", ...messageFlags(path), "--id", "m1"], env());
    assert.equal(JSON.parse(got.stdout).content, "changed");
    assert.equal(listed((await list(path)).stdout)[0]?.version, 2);
  });

  test("a malformed line or a line without an id stops put at that line, naming it, never quoting it", async () => {
    const path = newStorePath();
    const malformed = await put(
      path,
      `${JSON.stringify(MESSAGES[0])}\n\n{"id":"m2","content":"secret half-line"\n${JSON.stringify(MESSAGES[2])}\n`,
    );
    assert.equal(malformed.code, 1);
    assert.equal(
      malformed.stderr,
      "kms-envelope: line 3 is not JSON; the records of the lines before line 3 are stored (1), nothing from line 3 on: continue with tail -n +3\n",
    );
    assert.deepEqual(
      listed((await list(path)).stdout).map((record) => record.id),
      ["m1"],
    );

    const fresh = newStorePath();
    const noId = await put(fresh, JSON.stringify({ ...MESSAGES[0], id: undefined }));
    assert.equal(noId.code, 1);
    assert.equal(
      noId.stderr,
      "kms-envelope: line 1 has no id (--id-field): every record needs a string id; nothing was stored\n",
    );
    const numeric = await put(fresh, JSON.stringify({ ...MESSAGES[0], id: 17 }));
    assert.equal(numeric.code, 1);
    assert.match(
      numeric.stderr,
      /^kms-envelope: line 1: --id-field id must be a non-empty string, not a number;/,
    );
    for (const result of [malformed, noId, numeric])
      assert.ok(!result.stderr.includes("secret") && !result.stderr.includes("launch"));
  });

  test("a wrong invocation is exit 2 before stdin is read, and creates no store", async () => {
    const path = newStorePath();
    const input = ndjson(MESSAGES);
    const cases: [string[], RegExp][] = [
      [
        [
          "store",
          "put",
          ...messageFlags(path).map((flag) => (flag === "messages" ? "message" : flag)),
          "--workspace",
          "ws-a",
        ],
        /^kms-envelope: resource "message" is not in the field map.*did you mean "messages"\?/,
      ],
      [
        ["store", "put", ...messageFlags(path), "--workspace", "ws-a", "--id-field", "content"],
        /^kms-envelope: --id-field content: the field map encrypts content of messages, but --id-field values are stored in the clear \(name a plain field\)\n$/,
      ],
      [
        ["store", "put", ...messageFlags(path)],
        /^kms-envelope: --workspace: messages is sealed under workspace keys and no workspace was given \(give --workspace WORKSPACE or --workspace-field PATH\)\n$/,
      ],
      [
        ["store", "put", ...messageFlags(path), "--workspace", "ws-a", "--workspace-field", "ws"],
        /option '--workspace <workspace>' cannot be used with option '--workspace-field <field>'/,
      ],
    ];
    for (const [args, message] of cases) {
      const result = await runCli(args, env(), 20_000, input);
      assert.equal(result.code, 2, result.stderr);
      assert.match(result.stderr, message);
      assert.equal(existsSync(path), false, `${args.join(" ")}: no store was created`);
    }
  });

  test("read-only commands and rewrap on a missing store name its path, exit 2 and create nothing", async () => {
    const dataDir = join(directory.path, "never-created");
    const path = join(dataDir, "store.db");
    const missing = `kms-envelope: the SQLite store ${path} does not exist, and a command that only reads or rewrites records never creates one; check --store or --data-dir, or store records first (kms-envelope store put)\n`;
    const commands = [
      ["store", "list", "--resource", "messages", "--data-dir", dataDir],
      [
        "store",
        "get",
        "--resource",
        "messages",
        "--id",
        "m1",
        "--fields",
        ATELYAOS_MAP,
        "--data-dir",
        dataDir,
      ],
      ["export", "--subject", "ada", "--store", `sqlite://${path}`],
      ["rewrap", "--dry-run", "--fields", ATELYAOS_MAP, "--store", `sqlite://${path}`],
      ["rewrap", "--fields", ATELYAOS_MAP, "--store", `sqlite://${path}`],
    ];
    for (const args of commands) {
      const result = await runCli(args, env());
      assert.equal(result.code, 2, `${args.join(" ")}: ${result.stderr}`);
      assert.equal(result.stderr, missing, args.join(" "));
      assert.equal(existsSync(dataDir), false, `${args.join(" ")} created nothing`);
    }
  });

  test("store list | head -1: a reader that closes stdout early ends the listing quietly, exit 0", async () => {
    const path = newStorePath();
    const many = Array.from({ length: 2_000 }, (_, index) => ({
      id: `m-${String(index).padStart(5, "0")}`,
      owner: "ada",
      ws: "ws-a",
      content: `note ${index}`,
    }));
    const stored = await put(path, ndjson(many));
    assert.equal(stored.code, 0, stored.stderr);
    assert.equal(stored.stderr, "stored 2000 records in messages\n");
    const result = await runCliReadingOneLine([
      "store",
      "list",
      "--resource",
      "messages",
      "--store",
      `sqlite://${path}`,
    ]);
    assert.equal(result.stderr, "", "no write EPIPE or any other noise");
    assert.equal(result.code, 0);
    assert.match(result.stdout, /^\{"id":"m-00000"/);
  });

  describe("PostgreSQL", () => {
    let server: PostgresServer;
    before(async () => {
      server = await startPostgres();
    });
    after(async () => {
      await server?.stop();
    });

    test("put → list → get round trip on PostgreSQL; get and list refuse a database without the tables", async () => {
      const url = server.tcpUrl(await server.createDatabase());
      const flags = ["--resource", "messages", "--fields", ATELYAOS_MAP, "--store", url];
      const empty = await runCli(["store", "list", "--resource", "messages", "--store", url]);
      assert.equal(empty.code, 2);
      assert.match(
        empty.stderr,
        /^kms-envelope: the store postgres:\/\/127\.0\.0\.1:\d+\/kmse_\w+ has no kms-envelope tables: nothing was ever stored there; check --store or --data-dir\n$/,
      );
      assert.ok(!empty.stderr.includes(server.password), "the password is never printed");

      const stored = await runCli(
        ["store", "put", ...flags, "--subject-field", "owner", "--workspace-field", "ws"],
        env(),
        60_000,
        ndjson(MESSAGES),
      );
      assert.equal(stored.code, 0, stored.stderr);
      assert.equal(stored.stderr, "stored 3 records in messages\n");
      const all = await runCli(["store", "list", "--resource", "messages", "--store", url]);
      assert.deepEqual(
        listed(all.stdout).map((record) => [record.id, record.workspace, record.stamps[0]?.keyId]),
        MESSAGES.map((message) => [message.id, message.ws, suite.daemon.keyId]),
      );
      const got = await runCli(["store", "get", ...flags, "--id", "m3"], env());
      assert.equal(got.code, 0, got.stderr);
      assert.deepEqual(JSON.parse(got.stdout), MESSAGES[2]);
    });
  });
});
