/**
 * README.md's shell blocks, run as written. The line before each shell fence says whether and
 * how the block runs, and every shell block must say it, so a new block cannot slip in untested:
 *
 *   <!-- runnable -->           runs in a fresh directory;
 *   <!-- runnable: daemon -->   … with `kms-envelope serve --dev` listening on $SOCKET;
 *   <!-- runnable: keyring -->  … with a daemon on $SOCKET serving ./keyring.yaml, made by
 *                               keygen with the example provider (examples/custom-provider,
 *                               key-encryption key ./kek), and messages of the AtelyaOS field
 *                               map in $STORE, sealed under the keyring's first version;
 *   <!-- not runnable: why -->  never runs (a cluster, a cloud, a daemon that serves until
 *                               stopped).
 *
 * A block runs under `bash -euo pipefail` in a directory that looks to it like the root of a
 * checkout: copies of config/, deploy/ and examples/, and node_modules/ holding this checkout's build as
 * the kms-envelope package, so `kms-envelope` (its node_modules/.bin is first on PATH) and
 * `npx kms-envelope` both run the sources under test, and `import "kms-envelope"` loads them.
 * $STORE is a SQLite URL in that directory. The build is compiled from the sources in `before`
 * into a directory of its own: dist/ may be stale, and test/package rebuilds it meanwhile.
 */
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { chmod, copyFile, cp, mkdir, mkdtemp, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import {
  readLatestResults,
  renderPerformanceSummary,
  SUMMARY_END,
  SUMMARY_START,
} from "../../bench/readme-performance.js";
import { PACKAGE_ROOT } from "../../src/package-info.js";
import { cleanEnvironment } from "../support/daemon-launcher.js";
import { type CliCommand, DaemonProcess, runCli } from "../support/daemon-process.js";
import { keygenWithExampleProvider } from "../support/example-provider.js";

const FIXTURES = ["none", "daemon", "keyring"] as const;
type Fixture = (typeof FIXTURES)[number];

interface Block {
  /** Line of the opening fence in README.md (1-based). */
  fenceLine: number;
  language: string;
  text: string;
  marker: { runnable: true; fixture: Fixture } | { runnable: false; reason: string } | undefined;
}

const SHELL_LANGUAGES = new Set(["sh", "bash", "shell", "console"]);
const MARKER = /^<!--\s*(?:runnable(?::\s*(\S+))?|not runnable:\s*(.*?))\s*-->$/;
const BLOCK_TIMEOUT_MS = 90_000;
const PROVIDER_EXAMPLE = "examples/custom-provider/kek-file.mjs";

function parseReadme(text: string): { blocks: Block[]; strayMarkers: number[] } {
  const lines = text.split("\n");
  const blocks: Block[] = [];
  const strayMarkers: number[] = [];
  let open: { fenceLine: number; language: string; body: string[] } | undefined;
  lines.forEach((line, index) => {
    const fence = /^\s*```\s*(\S*)/.exec(line);
    if (open !== undefined) {
      if (fence !== null && fence[1] === "") {
        const before = lines[open.fenceLine - 2]?.trim() ?? "";
        const match = MARKER.exec(before);
        let marker: Block["marker"];
        if (match?.[2] !== undefined) marker = { runnable: false, reason: match[2] };
        else if (match !== null)
          marker = { runnable: true, fixture: (match[1] ?? "none") as Fixture };
        blocks.push({ ...open, text: open.body.join("\n"), marker });
        open = undefined;
      } else open.body.push(line);
      return;
    }
    if (fence !== null) {
      open = { fenceLine: index + 1, language: fence[1] ?? "", body: [] };
      return;
    }
    const next = lines[index + 1] ?? "";
    if (/<!--\s*(not )?runnable/.test(line) && !/^\s*```/.test(next)) strayMarkers.push(index + 1);
  });
  return { blocks, strayMarkers };
}

/** `latest.{json,md}` names `latest.json` and `latest.md`. */
function alternatives(path: string): string[] {
  const brace = /^(.*?)\{([^}]*)\}(.*)$/.exec(path);
  if (brace === null) return [path];
  const [, head, choices, tail] = brace;
  return (choices ?? "").split(",").flatMap((choice) => alternatives(`${head}${choice}${tail}`));
}

const README_TEXT = readFileSync(join(PACKAGE_ROOT, "README.md"), "utf8");
const { blocks: BLOCKS, strayMarkers: STRAY_MARKERS } = parseReadme(README_TEXT);
const RUNNABLE = BLOCKS.filter(
  (block): block is Block & { marker: { runnable: true; fixture: Fixture } } =>
    block.marker?.runnable === true,
);

const run = promisify(execFile);
let shared: string;
let packageRoot: string;
let cli: CliCommand;

before(async () => {
  shared = await mkdtemp(join(tmpdir(), "kms-envelope-readme-"));
  packageRoot = join(shared, "kms-envelope");
  await mkdir(packageRoot);
  await copyFile(join(PACKAGE_ROOT, "package.json"), join(packageRoot, "package.json"));
  for (const name of ["proto", "node_modules"])
    await symlink(join(PACKAGE_ROOT, name), join(packageRoot, name));
  await run(join(PACKAGE_ROOT, "node_modules/.bin/tsc"), [
    "-p",
    join(PACKAGE_ROOT, "tsconfig.build.json"),
    "--outDir",
    join(packageRoot, "dist"),
  ]);
  const main = join(packageRoot, "dist/src/cli/main.js");
  await chmod(main, 0o755);
  cli = [process.execPath, main];
});

after(() => (shared === undefined ? undefined : rm(shared, { recursive: true, force: true })));

/** A directory that looks like the root of a checkout, with the build installed. */
async function blockDirectory(): Promise<string> {
  const directory = await mkdtemp(join(shared, "block-"));
  await cp(join(PACKAGE_ROOT, "config"), join(directory, "config"), { recursive: true });
  await cp(join(PACKAGE_ROOT, "deploy"), join(directory, "deploy"), { recursive: true });
  await cp(join(PACKAGE_ROOT, "examples"), join(directory, "examples"), {
    recursive: true,
    filter: (source) => !source.split("/").includes("node_modules"),
  });
  await mkdir(join(directory, "node_modules/.bin"), { recursive: true });
  await symlink(packageRoot, join(directory, "node_modules/kms-envelope"));
  await symlink(
    "../kms-envelope/dist/src/cli/main.js",
    join(directory, "node_modules/.bin/kms-envelope"),
  );
  return directory;
}

async function startFixture(
  fixture: Fixture,
  directory: string,
  store: string,
): Promise<DaemonProcess | undefined> {
  const socketPath = join(directory, "kms.sock");
  if (fixture === "daemon") {
    return DaemonProcess.start({
      socketPath,
      env: {},
      args: ["--dev", "--run-dir", join(directory, "dev")],
      command: cli,
    });
  }
  if (fixture !== "keyring") return undefined;
  const provider = join(directory, PROVIDER_EXAMPLE);
  const keyring = join(directory, "keyring.yaml");
  await keygenWithExampleProvider({ cli, provider, keyring, kek: join(directory, "kek") });
  // A short poll, so the block's wait for the rotated key is a moment, not the default 10 s.
  const daemon = await DaemonProcess.start({
    socketPath,
    env: {},
    args: ["--keyring", keyring, "--provider-module", provider, "--keyring-poll-interval", "200ms"],
    command: cli,
  });
  const records = ["m1", "m2"].map((id) =>
    JSON.stringify({ id, owner: "ada", content: `message ${id}` }),
  );
  const put = await runCli(
    [
      ...["store", "put", "--resource", "messages", "--workspace", "ws-acme"],
      ...["--fields", join(directory, "config/field-map-atelyaos.yaml"), "--socket", socketPath],
      ...["--store", store, "--subject-field", "owner"],
    ],
    {},
    20_000,
    `${records.join("\n")}\n`,
    cli,
  );
  assert.equal(put.code, 0, put.stderr);
  return daemon;
}

/** The block's environment: nothing of the runner's npm, test or kms-envelope settings. */
function blockEnvironment(directory: string, store: string, socket: string | undefined) {
  const inherited = Object.entries(cleanEnvironment()).filter(
    ([name]) => !/^npm_/i.test(name) && name !== "INIT_CWD" && name !== "NODE_TEST_CONTEXT",
  );
  return {
    ...Object.fromEntries(inherited),
    PATH: `${join(directory, "node_modules/.bin")}:${process.env.PATH ?? ""}`,
    STORE: store,
    ...(socket === undefined ? {} : { SOCKET: socket }),
    // A command that forgets --socket or --store must find nothing, not this machine's daemon.
    KMS_ENVELOPE_RUN_DIR: join(directory, "run"),
    KMS_ENVELOPE_DATA_DIR: join(directory, "data"),
    // npx must run the installed command or fail, never fetch a package of that name.
    npm_config_offline: "true",
    npm_config_cache: join(shared, "npm-cache"),
    npm_config_update_notifier: "false",
  };
}

async function runBlock(block: Block): Promise<{ code: number | null; output: string }> {
  const fixture = block.marker?.runnable === true ? block.marker.fixture : "none";
  const directory = await blockDirectory();
  const store = `sqlite://${join(directory, "store.db")}`;
  const daemon = await startFixture(fixture, directory, store);
  // The ERR trap names the README line of the command that failed.
  const script = `trap 'echo "README.md:$((LINENO + ${block.fenceLine - 1})): exit $?: $BASH_COMMAND" >&2' ERR\n${block.text}\n`;
  const child = spawn("bash", ["-euo", "pipefail", "-c", script], {
    cwd: directory,
    env: blockEnvironment(directory, store, daemon?.socketPath),
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const timer = setTimeout(() => {
    stderr += `\n(killed after ${BLOCK_TIMEOUT_MS} ms)`;
    if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
  }, BLOCK_TIMEOUT_MS);
  try {
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    const daemonLog = daemon?.lines.slice(-15).join("\n") ?? "";
    return {
      code,
      output: `--- stdout\n${stdout.slice(-4000)}\n--- stderr\n${stderr.slice(-4000)}\n--- daemon\n${daemonLog}`,
    };
  } finally {
    clearTimeout(timer);
    await daemon?.stop();
  }
}

describe("README.md", () => {
  it("says of every shell block whether it runs, and how", () => {
    const shell = BLOCKS.filter((block) => SHELL_LANGUAGES.has(block.language));
    const unmarked = shell.filter((block) => block.marker === undefined);
    assert.deepEqual(
      unmarked.map((block) => block.fenceLine),
      [],
      "put <!-- runnable --> (or runnable: daemon / keyring) or <!-- not runnable: why --> before these fences",
    );
    for (const block of BLOCKS) {
      if (block.marker === undefined) continue;
      assert.ok(
        SHELL_LANGUAGES.has(block.language),
        `line ${block.fenceLine}: marker on a ${block.language} block`,
      );
      if (block.marker.runnable)
        assert.ok(
          FIXTURES.includes(block.marker.fixture),
          `line ${block.fenceLine}: fixture ${block.marker.fixture}`,
        );
      else assert.notEqual(block.marker.reason, "", `line ${block.fenceLine}: say why not`);
    }
    assert.deepEqual(STRAY_MARKERS, [], "markers must sit on the line right before a fence");
    assert.ok(RUNNABLE.length > 0);
  });

  it("names only files of the repository that exist", () => {
    const topLevel = readdirSync(PACKAGE_ROOT).filter(
      (name) => !["node_modules", "dist", ".git"].includes(name),
    );
    const named = new RegExp(
      `(?<![\\w./-])(?:\\./)?((?:${topLevel.map((name) => name.replace(".", "\\.")).join("|")})/(?:[^\\s\`)'"|,;:*…{]|\\{[^}\\s]*\\})*)`,
      "g",
    );
    const missing = [...README_TEXT.matchAll(named)]
      .flatMap((match) => alternatives(match[1] ?? ""))
      .map((path) => path.replace(/\.$/, ""))
      .filter((path) => !existsSync(join(PACKAGE_ROOT, path)));
    assert.deepEqual([...new Set(missing)], []);
  });

  it("shows the Performance tables of the committed benchmark results", () => {
    const start = README_TEXT.indexOf(SUMMARY_START);
    const end = README_TEXT.indexOf(SUMMARY_END);
    assert.ok(start !== -1 && end > start, "the Performance section keeps its generated block");
    const shown = README_TEXT.slice(start + SUMMARY_START.length, end).trim();
    const results = readLatestResults(join(PACKAGE_ROOT, "bench", "results"));
    assert.equal(
      shown,
      renderPerformanceSummary(results).trim(),
      "bench/results/latest.json and README.md disagree: run npm run bench (or BENCH_ONLY=<phase>), which rewrites both",
    );
  });

  for (const block of RUNNABLE) {
    const command = block.text
      .split("\n")
      .find((line) => line.trim() !== "" && !line.startsWith("#"))
      ?.replace(/\s+(#.*|\\)$/, "")
      .slice(0, 60);
    it(`runs README.md:${block.fenceLine} (${block.marker.fixture}): ${command}`, async () => {
      const result = await runBlock(block);
      assert.equal(result.code, 0, `README.md:${block.fenceLine}\n${block.text}\n${result.output}`);
    });
  }
});
