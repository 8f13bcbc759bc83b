/**
 * The package as an application team gets it: `npm pack`, installed into a project outside
 * the source tree, used only through its public entries. The project is the users-and-tokens
 * example, so the example is proven by the same run.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { copyFile, cp, mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { PACKAGE_ROOT } from "../../src/package-info.js";
import {
  type CliCommand,
  DaemonProcess,
  runCli,
  temporaryDirectory,
} from "../support/daemon-process.js";
import { keygenWithExampleProvider } from "../support/example-provider.js";

const run = promisify(execFile);
const EXAMPLE = join(PACKAGE_ROOT, "examples/users-and-tokens");
const PROVIDER_EXAMPLE = join(PACKAGE_ROOT, "examples/custom-provider/kek-file.mjs");
const SQLITE_ADDON = "node_modules/better-sqlite3/build/Release/better_sqlite3.node";

let workspace: { path: string; remove: () => Promise<void> };
let app: string;
let tarball: string;

before(async () => {
  workspace = await temporaryDirectory();
  // npm pack runs the package's prepare script, so what is packed is built from these sources.
  const packed = await run("npm", ["pack", "--silent", "--pack-destination", workspace.path], {
    cwd: PACKAGE_ROOT,
    maxBuffer: 16 * 1024 * 1024,
  });
  tarball = join(workspace.path, packed.stdout.trim().split("\n").at(-1) ?? "");
  app = join(workspace.path, "app");
  await cp(EXAMPLE, app, { recursive: true });
  // The provider example sits in the application's project, where its `kms-envelope/providers`
  // import resolves to the installed package, as it would for a team that copies it.
  await copyFile(PROVIDER_EXAMPLE, join(app, "kek-file.mjs"));
  const manifest = JSON.parse(await readFile(join(app, "package.json"), "utf8"));
  manifest.dependencies["kms-envelope"] = `file:${tarball}`;
  await writeFile(join(app, "package.json"), JSON.stringify(manifest, null, 2));
  // Install scripts are skipped only so that better-sqlite3 is not compiled from source a
  // second time (minutes on this machine); its add-on is the one this checkout built from the
  // same pinned version, for the same Node.
  await run("npm", ["install", "--ignore-scripts", "--no-audit", "--no-fund", "--prefer-offline"], {
    cwd: app,
  });
  await mkdir(join(app, "node_modules/better-sqlite3/build/Release"), { recursive: true });
  await copyFile(join(PACKAGE_ROOT, SQLITE_ADDON), join(app, SQLITE_ADDON));
});

after(() => workspace?.remove());

describe("the packed package", () => {
  it("holds the built library, its declarations, the CLI, protos, configs and monitoring rules, and no sources or tests", async () => {
    const { stdout } = await run("tar", ["tzf", tarball]);
    const files = stdout.trim().split("\n");
    for (const expected of [
      "package/dist/src/index.js",
      "package/dist/src/index.d.ts",
      "package/dist/providers/types.d.ts",
      "package/dist/src/cli/main.js",
      "package/dist/docs/api/kms-envelope/index.md",
      "package/dist/docs/api/providers/index.md",
      "package/proto/k8s.io/kms/apis/v2/api.proto",
      "package/config/field-map-obot.yaml",
      "package/deploy/prometheus/kms-envelope.rules.yaml",
      "package/deploy/grafana/kms-envelope.dashboard.json",
      "package/LICENSE",
      "package/examples/users-and-tokens/app.mjs",
      "package/examples/custom-provider/kek-file.mjs",
      "package/README.md",
    ]) {
      assert.ok(files.includes(expected), `${expected} missing from the tarball`);
    }
    const unwanted = files.filter(
      (file) =>
        file.startsWith("package/test/") ||
        file.startsWith("package/src/") ||
        file.startsWith("package/bench/") ||
        (file.endsWith(".ts") && !file.endsWith(".d.ts")),
    );
    assert.deepEqual(unwanted, []);
  });

  it("runs the example application through the public entry: seal, store in SQLite, read back, rotate and rewrap", async () => {
    const data = join(workspace.path, "data");
    const { stdout } = await run(process.execPath, ["app.mjs", data], { cwd: app });
    const summary = JSON.parse(stdout);
    const user = { id: "ada", email: "ada@example.com", displayName: "Ada", plan: "team" };
    assert.deepEqual(summary.user, user);
    assert.equal(summary.mistypedResource, "UNMAPPED_RESOURCE");
    assert.equal(summary.staleBeforeRewrap, true);
    // users: email, displayName; oauthtokens: accessToken, refreshToken; credentials: secrets.
    assert.equal(summary.fieldsRewrapped, 5);
    assert.deepEqual(summary.afterRotation, {
      user,
      stale: false,
      accessToken: "gho_example_access",
      credential: { GITHUB_TOKEN: "ghp_example_token" },
    });
    const database = await readFile(join(data, "app.db"));
    for (const secret of ["ada@example.com", "gho_example_access", "ghr_example", "ghp_example"])
      assert.equal(database.includes(secret), false, `${secret} is stored in the clear`);
  });

  it("type-checks the examples against the shipped declarations", async () => {
    const compiler = join(PACKAGE_ROOT, "node_modules/.bin/tsc");
    const flags = ["--noEmit", "--allowJs", "--checkJs", "--strict", "--skipLibCheck"];
    const resolution = ["--module", "nodenext", "--moduleResolution", "nodenext"];
    const types = ["--typeRoots", join(PACKAGE_ROOT, "node_modules/@types"), "--types", "node"];
    const files = ["app.mjs", "kek-file.mjs"];
    await run(compiler, [...flags, ...resolution, "--target", "es2022", ...types, ...files], {
      cwd: app,
    });
  });

  it("refuses imports that reach into dist/ and offers the provider authors' entry", async () => {
    const probe = `
      const deep = await import("kms-envelope/dist/src/index.js").then(() => "loaded", (error) => error.code);
      const providers = await import("kms-envelope/providers");
      const root = await import("kms-envelope");
      console.log(JSON.stringify({
        deep,
        providerError: typeof providers.ProviderError,
        errorCodes: root.ERROR_CODES.includes("DECRYPTION_FAILED"),
      }));`;
    const { stdout } = await run(process.execPath, ["--input-type=module", "-e", probe], {
      cwd: app,
    });
    assert.deepEqual(JSON.parse(stdout), {
      deep: "ERR_PACKAGE_PATH_NOT_EXPORTED",
      providerError: "function",
      errorCodes: true,
    });
  });

  it("loads the example custody provider into the installed command: keygen, rotate, conformance", async () => {
    const cli: CliCommand = [join(app, "node_modules/.bin/kms-envelope")];
    const provider = join(app, "kek-file.mjs");
    const keyring = join(workspace.path, "keyring.yaml");
    const otherKek = join(workspace.path, "other-kek");
    await writeFile(otherKek, randomBytes(32), { mode: 0o600 });
    const { keyRef, keygen } = await keygenWithExampleProvider({
      cli,
      provider,
      keyring,
      kek: join(workspace.path, "kek"),
    });
    assert.match(keygen.stdout, /^primary +kek-file:/);
    const rotate = await runCli(
      ["rotate", "--keyring", keyring, "--provider-module", provider],
      {},
      20_000,
      undefined,
      cli,
    );
    assert.equal(rotate.code, 0, rotate.stderr);
    assert.match(rotate.stdout, /^active +kek-file:.*\nprimary +kek-file:/);
    const conformance = await runCli(
      [
        "conformance",
        "--provider",
        provider,
        "--key-ref",
        keyRef,
        "--other-key-ref",
        `file:${otherKek}`,
      ],
      {},
      20_000,
      undefined,
      cli,
    );
    assert.equal(conformance.code, 0, conformance.stdout + conformance.stderr);
    assert.match(conformance.stdout, / 0 failed, 0 warnings, .*: conforms/);
  });

  it("serves from the installed command, and its field service seals in worker threads", async () => {
    const cli: CliCommand = [join(app, "node_modules/.bin/kms-envelope")];
    const socketPath = join(workspace.path, "kms.sock");
    const daemon = await DaemonProcess.start({
      socketPath,
      env: {},
      args: ["--dev"],
      command: cli,
    });
    try {
      const status = await runCli(["status", "--socket", socketPath], {}, 20_000, undefined, cli);
      assert.equal(status.code, 0, status.stderr);
      const fieldMap = join(app, "node_modules/kms-envelope/config/field-map-atelyaos.yaml");
      const common = ["--fields", fieldMap, "--socket", socketPath, "--resource", "messages"];
      const scope = ["--id", "m1", "--workspace", "w1"];
      const sealed = await runCli(
        ["encrypt", ...common, ...scope],
        {},
        20_000,
        JSON.stringify({ content: "hello" }),
        cli,
      );
      assert.equal(sealed.code, 0, sealed.stderr);
      assert.match(JSON.parse(sealed.stdout).content, /^kmse:v1:/);
      const opened = await runCli(["decrypt", ...common, ...scope], {}, 20_000, sealed.stdout, cli);
      assert.equal(opened.code, 0, opened.stderr);
      assert.deepEqual(JSON.parse(opened.stdout), { content: "hello" });
      assert.ok(
        daemon.lines.some((line) => line.includes("call handed off the event loop")),
        "the field service did not run the batch in a worker",
      );
    } finally {
      assert.equal(await daemon.stop(), 0);
    }
  });
});
