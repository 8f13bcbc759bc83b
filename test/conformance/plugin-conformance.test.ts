import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { runPluginConformance } from "../../src/conformance/plugin/index.js";
import type { ConformanceReport } from "../../src/conformance/report.js";
import { PACKAGE_ROOT } from "../../src/package-info.js";
import type { Defect } from "../fixtures/broken-kms-plugin.js";
import { runCli, suiteDaemon, temporaryDirectory } from "../support/daemon-process.js";

const BROKEN_PLUGIN = join(PACKAGE_ROOT, "test/fixtures/broken-kms-plugin.ts");
// Small enough to keep the suite fast; the rules are the same at any size.
const QUICK = { latencySamples: 10, concurrency: 16, v1: true };

function failed(report: ConformanceReport): string[] {
  return report.results.filter((result) => result.status === "fail").map((result) => result.id);
}

function summary(report: ConformanceReport): string {
  return report.results
    .filter((result) => result.status !== "pass")
    .map((result) => `${result.status} ${result.id}: ${result.evidence.join("; ")}`)
    .join("\n");
}

describe("plugin conformance against our daemon", () => {
  const suite = suiteDaemon();

  test("kms-envelope conformance --v1 --json: every rule passes, exit 0", async () => {
    const result = await runCli([
      "conformance",
      "--endpoint",
      `unix://${suite.daemon.socketPath}`,
      "--v1",
      "--json",
    ]);
    assert.equal(result.code, 0, `exit ${result.code}: ${result.stderr}${result.stdout}`);
    const report = JSON.parse(result.stdout) as ConformanceReport;
    assert.equal(report.conforms, true, summary(report));
    assert.deepEqual(
      report.results.filter((rule) => rule.status !== "pass").map((rule) => rule.id),
      [],
      `rules that did not pass: ${summary(report)}`,
    );
    assert.ok(report.results.length >= 19, `only ${report.results.length} rules ran`);
  });
});

/**
 * Starts one fixture process serving a plugin per entry, each on `<directory>/<name>.sock`
 * with that defect ("none": a correct plugin); resolves with the process and the endpoints.
 */
async function startBroken(
  directory: string,
  names: readonly string[],
): Promise<{ child: ChildProcess; endpoints: Map<string, string> }> {
  const endpoints = new Map(
    names.map((name) => [name, `unix://${join(directory, `${name}.sock`)}`]),
  );
  const args = names.flatMap((name) => [
    "--plugin",
    `${join(directory, `${name}.sock`)}${name === "none" ? "" : `=${name}`}`,
  ]);
  const child = spawn(process.execPath, ["--import", "tsx", BROKEN_PLUGIN, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`broken plugin did not start: ${output}`)),
      20_000,
    );
    child.stdout?.on("data", (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes("listening")) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.stderr?.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.once("exit", (code) => reject(new Error(`broken plugin exited ${code}: ${output}`)));
  });
  return { child, endpoints };
}

// Each defect and exactly the rules it must fail; every other rule must pass.
const EXPECTED: Record<Defect | "none", string[]> = {
  none: [],
  "wrong-version": ["status.version"],
  "empty-key-id": ["status.key-id", "encrypt.key-id"],
  "oversized-ciphertext": ["encrypt.ciphertext-size"],
  "bad-annotation-keys": ["encrypt.annotation-keys"],
  "oversized-annotations": ["encrypt.annotation-size"],
  "key-id-mismatch": ["encrypt.key-id-matches-status"],
  "crash-on-garbage": ["decrypt.garbage"],
  "v1-wrong-version": ["v1.version"],
};

describe("plugin conformance against a deliberately broken plugin", () => {
  const endpoints = new Map<string, string>();
  const children: ChildProcess[] = [];
  let directory: Awaited<ReturnType<typeof temporaryDirectory>> | undefined;

  before(async () => {
    directory = await temporaryDirectory();
    const path = directory.path;
    // A crash takes down its whole process, so that defect gets a process of its own.
    const names = Object.keys(EXPECTED);
    const started = await Promise.all([
      startBroken(
        path,
        names.filter((name) => name !== "crash-on-garbage"),
      ),
      startBroken(path, ["crash-on-garbage"]),
    ]);
    for (const { child, endpoints: served } of started) {
      children.push(child);
      for (const [name, endpoint] of served) endpoints.set(name, endpoint);
    }
  });
  after(async () => {
    for (const child of children) child.kill("SIGKILL");
    await directory?.remove();
  });

  for (const [defect, expected] of Object.entries(EXPECTED)) {
    test(`${defect}: fails ${expected.length === 0 ? "no rule" : expected.join(", ")} and nothing else`, async () => {
      const endpoint = endpoints.get(defect);
      assert.ok(endpoint !== undefined, `the ${defect} plugin did not start`);
      const report = await runPluginConformance({ endpoint, ...QUICK });
      assert.deepEqual(failed(report), expected, `with defect ${defect}:\n${summary(report)}`);
      const warned = report.results.filter(
        (result) => result.status === "warn" || result.status === "skip",
      );
      assert.deepEqual(
        warned.map((result) => result.id),
        [],
        `with defect ${defect}:\n${summary(report)}`,
      );
      for (const id of expected) {
        const result = report.results.find((rule) => rule.id === id);
        assert.ok(
          result?.evidence.some((fact) => fact.startsWith("FAIL: ")),
          `rule ${id} failed without saying what it saw: ${result?.evidence.join("; ")}`,
        );
      }
    });
  }

  test("the CLI prints the failing rule with its evidence and exits 1", async () => {
    const endpoint = endpoints.get("key-id-mismatch");
    assert.ok(endpoint !== undefined, "the key-id-mismatch plugin did not start");
    const result = await runCli(["conformance", "--endpoint", endpoint, "--samples", "5"]);
    assert.equal(result.code, 1, `exit ${result.code}: ${result.stderr}`);
    assert.match(result.stdout, /^FAIL {2}encrypt\.key-id-matches-status /m, result.stdout);
    assert.match(
      result.stdout,
      /Encrypt key_id "broken-key-2" differs from Status key_id "broken-key-1"/,
      result.stdout,
    );
    assert.match(result.stdout, /1 failed, .* DOES NOT CONFORM/, result.stdout);
  });
});

describe("kms-envelope conformance invocation", () => {
  test("an endpoint nobody serves: status.answers fails, the rest are skipped, exit 1", async () => {
    const directory = await temporaryDirectory();
    try {
      const result = await runCli([
        "conformance",
        "--endpoint",
        `unix://${directory.path}/absent.sock`,
        "--json",
      ]);
      assert.equal(result.code, 1, `exit ${result.code}: ${result.stderr}`);
      const report = JSON.parse(result.stdout) as ConformanceReport;
      assert.deepEqual(failed(report), ["status.answers"], summary(report));
      assert.equal(report.summary.skip, report.results.length - 1, summary(report));
    } finally {
      await directory.remove();
    }
  });

  test("wrong invocations exit 2 with advice", async () => {
    const invocations = [
      ["conformance"],
      ["conformance", "--endpoint", "tcp://127.0.0.1:1"],
      ["conformance", "--endpoint", "unix:///x.sock", "--timeout", "soon"],
      ["conformance", "--provider", "local"],
    ];
    const results = await Promise.all(invocations.map((args) => runCli(args)));
    for (const [index, result] of results.entries()) {
      const args = invocations[index]?.join(" ");
      assert.equal(result.code, 2, `${args}: exit ${result.code}: ${result.stderr}`);
      assert.match(
        result.stderr,
        /^kms-envelope: .*(--endpoint|--timeout|--key-ref)/,
        `${args}: ${result.stderr}`,
      );
    }
  });

  test("--provider runs the provider rules against a module and exits 0 when it conforms", async () => {
    const result = await runCli(
      [
        "conformance",
        "--provider",
        "./test/fixtures/custom-provider.ts",
        "--key-ref",
        "custom:cli",
        "--json",
      ],
      { CUSTOM_PROVIDER_KEK: Buffer.alloc(32, 7).toString("base64") },
    );
    assert.equal(result.code, 0, `exit ${result.code}: ${result.stderr}${result.stdout}`);
    const report = JSON.parse(result.stdout) as ConformanceReport;
    assert.equal(report.suite, "provider", "the provider suite ran");
    assert.equal(report.conforms, true, summary(report));
    assert.ok(
      report.results.some((rule) => rule.id === "provider.round-trip" && rule.status === "pass"),
      summary(report),
    );
  });
});
