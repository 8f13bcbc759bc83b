import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { loadEncryptionConfiguration } from "../../src/engine/config/encryption-configuration.js";
import { EncryptionEngine } from "../../src/engine/encryption-engine.js";
import type { FieldLayer } from "../../src/fields/field-layer.js";
import { openFieldLayer } from "../../src/fields/open-field-layer.js";
import { PACKAGE_ROOT } from "../../src/package-info.js";
import { runCli, suiteDaemon, temporaryDirectory } from "../support/daemon-process.js";

const OBOT_MAP = join(PACKAGE_ROOT, "config/field-map-obot.yaml");
const ATELYAOS_MAP = join(PACKAGE_ROOT, "config/field-map-atelyaos.yaml");
const KMS_PREFIX = "k8s:enc:kms:v2:kms-envelope:";

function engineConfig(socket: string): string {
  return `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: ["*.obot.obot.ai", credentials, secrets]
    providers:
      - kms: { apiVersion: v2, name: kms-envelope, endpoint: "unix://${socket}", timeout: 3s }
      - identity: {}
`;
}

const decoded = (text: unknown) => Buffer.from(text as string, "base64").toString("latin1");

describe("field layer and CLI against the real daemon", () => {
  const suite = suiteDaemon();
  let directory: Awaited<ReturnType<typeof temporaryDirectory>>;
  let configPath: string;
  let obot: FieldLayer;
  let atelyaos: FieldLayer;

  before(async () => {
    directory = await temporaryDirectory();
    configPath = join(directory.path, "encryption-configuration.yaml");
    await writeFile(configPath, engineConfig(suite.daemon.socketPath));
    obot = await openFieldLayer({ fieldMapPath: OBOT_MAP, encryptionConfigPath: configPath });
    atelyaos = await openFieldLayer({
      fieldMapPath: ATELYAOS_MAP,
      daemonSocket: suite.daemon.socketPath,
    });
  });
  after(async () => {
    await obot?.close();
    await atelyaos?.close();
    await directory?.remove();
  });

  describe("engine route (Obot field map, kms v2 through the daemon's socket)", () => {
    it("encrypts exactly the listed fields as base64 of k8s:enc:kms:v2 values and restores them", async () => {
      const user = {
        id: "u1",
        document: {
          email: "ada@example.com",
          username: "ada",
          displayName: "",
          iconURL: null,
          role: "admin",
          createdAt: 1_700_000_000,
        },
      };
      const [sealed] = await obot.seal("users.obot.obot.ai", [user]);
      assert.ok(sealed, "one record out");
      assert.equal(sealed.document.role, "admin", "unlisted fields are never touched");
      assert.equal(sealed.document.createdAt, 1_700_000_000);
      assert.equal(sealed.document.iconURL, null, "null listed fields stay null");
      assert.ok(!("originalEmail" in sealed.document), "absent listed fields stay absent");
      for (const field of ["email", "username", "displayName"])
        assert.ok(
          decoded(sealed.document[field]).startsWith(KMS_PREFIX),
          `${field} is a kms v2 value`,
        );
      assert.deepEqual(
        sealed.stamps.map((stamp) => [stamp.path, stamp.route, stamp.provider, stamp.keyId]),
        ["username", "email", "displayName"].map((path) => [
          path,
          "engine",
          "kms:v2:kms-envelope",
          suite.daemon.keyId,
        ]),
      );
      const [opened] = await obot.open("users.obot.obot.ai", [
        { id: "u1", document: sealed.document },
      ]);
      assert.deepEqual(opened?.document, user.document);
      assert.equal(opened?.stale, false);
      assert.deepEqual(await obot.currentWriter("users.obot.obot.ai", "email"), {
        provider: "kms:v2:kms-envelope",
        keyId: suite.daemon.keyId,
      });
    });

    it("binds each value to <resource>/<field>/<record id>: moved values do not decrypt", async () => {
      const [sealed] = await obot.seal("mcpoauthtokens.obot.obot.ai", [
        { id: "t1", document: { accessToken: "ya29.a", refreshToken: "1//r" } },
      ]);
      const document = sealed?.document ?? {};
      await assert.rejects(obot.open("mcpoauthtokens.obot.obot.ai", [{ id: "t2", document }]), {
        code: "DECRYPTION_FAILED",
      });
      await assert.rejects(
        obot.open("mcpoauthtokens.obot.obot.ai", [
          {
            id: "t1",
            document: {
              accessToken: document.refreshToken ?? "",
              refreshToken: document.accessToken ?? "",
            },
          },
        ]),
        { code: "DECRYPTION_FAILED" },
      );
    });

    it("restores JSON values with their type and binary fields as bytes", async () => {
      const headers = { "content-type": ["application/json"], retries: 3, ok: true };
      const [sealed] = await obot.seal("mcpauditlogs.obot.obot.ai", [
        {
          id: "a1",
          document: { requestHeaders: headers, requestBody: "plain text body", responseBody: 42 },
        },
      ]);
      const [opened] = await obot.open("mcpauditlogs.obot.obot.ai", [
        { id: "a1", document: sealed?.document ?? {} },
      ]);
      assert.deepEqual(opened?.document, {
        requestHeaders: headers,
        requestBody: "plain text body",
        responseBody: 42,
      });

      const frame = Uint8Array.from([0, 1, 2, 253, 254, 255]);
      const stored = await obot.sealValue(
        "runstates.obot.obot.ai",
        "callFrame",
        { id: "r1" },
        frame,
      );
      const back = await obot.openValue(
        "runstates.obot.obot.ai",
        "callFrame",
        { id: "r1" },
        stored.text,
      );
      assert.deepEqual(Buffer.from(back.value as Uint8Array), Buffer.from(frame));
      const [viaDocument] = await obot.open("runstates.obot.obot.ai", [
        { id: "r1", document: { callFrame: stored.text } },
      ]);
      assert.equal(
        viaDocument?.document.callFrame,
        Buffer.from(frame).toString("base64"),
        "bytes are base64 in JSON",
      );
    });

    it("refuses a value of the wrong type instead of changing it", async () => {
      await assert.rejects(
        obot.seal("users.obot.obot.ai", [{ id: "u2", document: { email: 42 } }]),
        /users.obot.obot.ai u2 email is a string field but holds a number/,
      );
    });
  });

  describe("field-service route (AtelyaOS field map, workspace keys in the daemon)", () => {
    it("seals listed and nested fields to kmse:v1 values under the daemon's key and opens them", async () => {
      const server = {
        id: "mcp-1",
        workspace: "ws-acme",
        document: {
          name: "notion",
          config: { url: "https://mcp.example", clientId: "cid", clientSecret: "s3cr3t" },
        },
      };
      const [sealed] = await atelyaos.seal("mcp_servers", [server]);
      const config = sealed?.document.config as Record<string, string>;
      assert.equal(config.url, "https://mcp.example", "unlisted nested field untouched");
      assert.ok(
        config.clientSecret?.startsWith(`kmse:v1:${suite.daemon.keyId}:`),
        "sealed by the daemon",
      );
      assert.equal(
        server.document.config.clientSecret,
        "s3cr3t",
        "the caller's document is not modified",
      );
      const [opened] = await atelyaos.open("mcp_servers", [
        { ...server, document: sealed?.document ?? {} },
      ]);
      assert.deepEqual(opened?.document, server.document);
      await assert.rejects(
        atelyaos.open("mcp_servers", [
          { ...server, workspace: "ws-other", document: sealed?.document ?? {} },
        ]),
        { code: "DECRYPTION_FAILED" },
        "another workspace's key does not open it",
      );
      await assert.rejects(
        atelyaos.seal("messages", [{ id: "m1", document: { content: "hi" } }]),
        /need a workspace/,
      );
    });
  });

  describe("CLI", () => {
    const env = () => ({ KMS_ENVELOPE_SOCKET: suite.daemon.socketPath });
    const cookieArgs = () => [
      "--config",
      configPath,
      "--fields",
      OBOT_MAP,
      "--resource",
      "sessioncookies.obot.obot.ai",
    ];

    it("encrypt then decrypt one JSON document; NDJSON with ids from a field", async () => {
      const args = cookieArgs();
      const encrypted = await runCli(
        ["encrypt", ...args, "--id", "s1"],
        env(),
        20_000,
        '{"cookie":"abc","user":"u1"}',
      );
      assert.equal(encrypted.code, 0, encrypted.stderr);
      const document = JSON.parse(encrypted.stdout) as Record<string, string>;
      assert.equal(document.user, "u1");
      assert.ok(decoded(document.cookie).startsWith(KMS_PREFIX), "cookie encrypted");
      const decrypted = await runCli(
        ["decrypt", ...args, "--id", "s1"],
        env(),
        20_000,
        encrypted.stdout,
      );
      assert.equal(decrypted.code, 0, decrypted.stderr);
      assert.deepEqual(JSON.parse(decrypted.stdout), { cookie: "abc", user: "u1" });

      const lines = '{"id":"a","cookie":"1"}\n\n{"id":"b","cookie":"2"}\n';
      const many = await runCli(
        ["encrypt", ...args, "--ndjson", "--id-field", "id"],
        env(),
        20_000,
        lines,
      );
      assert.equal(many.code, 0, many.stderr);
      const back = await runCli(
        ["decrypt", ...args, "--ndjson", "--id-field", "id"],
        env(),
        20_000,
        many.stdout,
      );
      assert.deepEqual(
        back.stdout
          .trim()
          .split("\n")
          .map((line) => JSON.parse(line)),
        [
          { id: "a", cookie: "1" },
          { id: "b", cookie: "2" },
        ],
      );
    });

    it("reports bad input with a clear message and a non-zero exit", async () => {
      const args = cookieArgs();
      const notJson = await runCli(["encrypt", ...args, "--id", "x"], env(), 20_000, "{nope");
      assert.equal(notJson.code, 1);
      assert.match(notJson.stderr, /kms-envelope: the input is not JSON/);
      const garbage = Buffer.from(`${KMS_PREFIX}garbage`).toString("base64");
      const tampered = await runCli(
        ["decrypt", ...args, "--id", "x"],
        env(),
        20_000,
        `{"cookie":"${garbage}"}`,
      );
      assert.equal(tampered.code, 1);
      assert.match(tampered.stderr, /kms-envelope: malformed ciphertext/);
      const legacy = Buffer.from("set before encryption").toString("base64");
      const plain = await runCli(
        ["decrypt", ...args, "--id", "x"],
        env(),
        20_000,
        `{"cookie":"${legacy}"}`,
      );
      assert.equal(plain.code, 0, "identity (second provider) still reads old plaintext");
      assert.match(plain.stderr, /1 of 1 records were written by an older provider or key/);
      const noMap = await runCli(["encrypt", "--resource", "x", "--id", "1"], env(), 20_000, "{}");
      assert.equal(noMap.code, 2);
      assert.match(noMap.stderr, /--fields/);
    });

    it("refuses a resource the field map does not list (exit 2, nothing on stdout) in both directions", async () => {
      const obotArgs = ["--config", configPath, "--fields", OBOT_MAP, "--id", "s1"];
      const input = '{"cookie":"cookie-secret-abc","user":"u1"}';
      for (const direction of ["encrypt", "decrypt"]) {
        const refused = await runCli(
          [direction, ...obotArgs, "--resource", "sessioncookie.obot.obot.ai"],
          env(),
          20_000,
          input,
        );
        assert.equal(refused.code, 2, refused.stderr);
        assert.equal(refused.stdout, "", `${direction}: no record is printed`);
        assert.match(
          refused.stderr,
          /^kms-envelope: resource "sessioncookie\.obot\.obot\.ai" is not in the field map, so none of its fields would be encrypted \(did you mean "sessioncookies\.obot\.obot\.ai"\?\); known resources: "credentials", .*"users\.obot\.obot\.ai"; to store it in the clear on purpose, list it in the field map with no fields \(- resource: "sessioncookie\.obot\.obot\.ai"\) or pass --allow-unmapped/,
        );
        assert.equal(refused.stderr.split("\n").length, 2, "one line");
        assert.ok(!refused.stderr.includes("cookie-secret-abc"), "the value is never printed");
      }
      const message = await runCli(
        ["encrypt", "--fields", ATELYAOS_MAP, "--resource", "message", "--id", "m1"],
        env(),
        20_000,
        '{"content":"private words"}',
      );
      assert.equal(message.code, 2, message.stderr);
      assert.equal(message.stdout, "");
      assert.match(
        message.stderr,
        /resource "message" is not in the field map.*did you mean "messages"\?/,
      );
    });

    it("stores an unlisted resource in the clear only when asked: --allow-unmapped or a map entry with no fields", async () => {
      const input = { cookie: "kept plain on purpose", user: "u1" };
      const allowed = await runCli(
        [
          "encrypt",
          "--config",
          configPath,
          "--fields",
          OBOT_MAP,
          "--resource",
          "sessioncookie.obot.obot.ai",
          "--id",
          "s1",
          "--allow-unmapped",
        ],
        env(),
        20_000,
        JSON.stringify(input),
      );
      assert.equal(allowed.code, 0, allowed.stderr);
      assert.deepEqual(JSON.parse(allowed.stdout), input);

      const plainMap = join(directory.path, "plain-map.yaml");
      await writeFile(
        plainMap,
        "apiVersion: kms-envelope/v1\nkind: FieldMap\nresources:\n  - resource: notes\n",
      );
      for (const direction of ["encrypt", "decrypt"]) {
        const plain = await runCli(
          [direction, "--fields", plainMap, "--resource", "notes", "--id", "n1"],
          env(),
          20_000,
          JSON.stringify(input),
        );
        assert.equal(plain.code, 0, plain.stderr);
        assert.deepEqual(JSON.parse(plain.stdout), input, `${direction} passes it through`);
      }
    });

    it("encrypt warns about, or with --guard refuse refuses, a credential pasted into a plaintext field", async () => {
      const args = [
        "encrypt",
        "--fields",
        ATELYAOS_MAP,
        "--resource",
        "workrooms",
        "--id",
        "w1",
        "--workspace",
        "ws-acme",
      ];
      const token = "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB";
      const input = JSON.stringify({
        title: "Q3 launch",
        goal: `deploy with ${token}`,
        pasteBlocks: ["notes"],
      });
      const warned = await runCli(args, env(), 20_000, input);
      assert.equal(warned.code, 0, warned.stderr);
      assert.match(
        warned.stderr,
        /warning: workrooms "w1": plaintext field goal looks like a credential/,
      );
      assert.doesNotMatch(warned.stderr, new RegExp(token), "the value itself is never printed");
      assert.ok(
        String(JSON.parse(warned.stdout).pasteBlocks).startsWith("kmse:v1:"),
        "encrypted anyway",
      );
      const refused = await runCli([...args, "--guard", "refuse"], env(), 20_000, input);
      assert.equal(refused.code, 1);
      assert.equal(refused.stdout, "", "nothing is written");
      assert.match(refused.stderr, /plaintext field goal looks like a credential/);
      const clean = await runCli(
        [...args, "--guard", "refuse"],
        env(),
        20_000,
        JSON.stringify({ title: "Q3", goal: "ship it" }),
      );
      assert.equal(clean.code, 0, clean.stderr);
    });

    it("etcd decode opens a value the way kube-apiserver stored it, naming provider and staleness", async () => {
      const key = "/registry/secrets/default/db";
      const engine = await EncryptionEngine.start(await loadEncryptionConfiguration(configPath));
      const stored = await engine.encrypt(
        "secrets",
        Buffer.from("k8s\0protobuf-object"),
        Buffer.from(key),
      );
      engine.close();
      const raw = await runCli(
        ["etcd", "decode", "--config", configPath, "--key", key],
        env(),
        20_000,
        stored.data,
      );
      assert.equal(raw.code, 0, raw.stderr);
      assert.equal(raw.stdout, "k8s\0protobuf-object");
      assert.match(raw.stderr, /secrets decrypted by kms:v2:kms-envelope key/);
      const json = await runCli(
        ["etcd", "decode", "--encryption-config", configPath, "--key", key, "--json"],
        env(),
        20_000,
        stored.data,
      );
      const both = await runCli(
        ["etcd", "decode", "--config", configPath, "--encryption-config", configPath, "--key", key],
        env(),
        20_000,
        stored.data,
      );
      assert.equal(both.code, 2);
      assert.match(
        both.stderr,
        /--config: is the old name of --encryption-config, and both are given \(give only --encryption-config\)/,
      );
      const none = await runCli(["etcd", "decode", "--key", key], env(), 20_000, stored.data);
      assert.equal(none.code, 2);
      assert.match(none.stderr, /--encryption-config: is required/);
      const answer = JSON.parse(json.stdout) as Record<string, unknown>;
      assert.deepEqual(
        { ...answer, plaintext: Buffer.from(answer.plaintext as string, "base64").toString() },
        {
          resource: "secrets",
          provider: "kms:v2:kms-envelope",
          keyId: suite.daemon.keyId,
          stale: false,
          plaintext: "k8s\0protobuf-object",
        },
      );
      const plain = await runCli(
        ["etcd", "decode", "--config", configPath, "--key", key, "--json"],
        env(),
        20_000,
        "k8s\0old",
      );
      assert.equal(
        (JSON.parse(plain.stdout) as { stale: boolean }).stale,
        true,
        "identity-read plaintext is stale",
      );
      const moved = await runCli(
        ["etcd", "decode", "--config", configPath, "--key", "/registry/secrets/default/other"],
        env(),
        20_000,
        stored.data,
      );
      assert.equal(moved.code, 1);
      assert.match(moved.stderr, /decryption failed/);
    });

    it("etcd decode finds the resource under a custom --etcd-prefix it was not told, and holds a given one to the key", async () => {
      const key = "/clusters/a.example.com/secrets/default/db";
      const engine = await EncryptionEngine.start(await loadEncryptionConfiguration(configPath));
      const stored = await engine.encrypt("secrets", Buffer.from("k8s\0object"), Buffer.from(key));
      engine.close();
      const found = await runCli(
        ["etcd", "decode", "--encryption-config", configPath, "--key", key, "--json"],
        env(),
        20_000,
        stored.data,
      );
      assert.equal(found.code, 0, found.stderr);
      assert.deepEqual(
        { ...(JSON.parse(found.stdout) as object), plaintext: undefined },
        {
          resource: "secrets",
          provider: "kms:v2:kms-envelope",
          keyId: suite.daemon.keyId,
          stale: false,
          plaintext: undefined,
        },
      );
      const told = await runCli(
        [
          "etcd",
          "decode",
          "--encryption-config",
          configPath,
          "--key",
          key,
          "--etcd-prefix",
          "/registry",
        ],
        env(),
        20_000,
        stored.data,
      );
      assert.equal(told.code, 2);
      assert.match(
        told.stderr,
        /^kms-envelope: --etcd-prefix: "\/clusters\/a\.example\.com\/secrets\/default\/db" is not under \/registry\/ \(/,
      );
    });
  });
});
