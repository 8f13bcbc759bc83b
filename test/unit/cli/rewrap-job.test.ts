/**
 * The example Kubernetes Job for shared rewrap (examples/shared-rewrap/rewrap-job.yaml) runs
 * several workers of the real CLI: its container arguments are parsed by the program's own
 * `rewrap` command, so a renamed or removed flag fails here instead of in a cluster.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { parse } from "yaml";
import { buildProgram } from "../../../src/cli/program.js";
import { PACKAGE_ROOT } from "../../../src/package-info.js";

interface Container {
  command: string[];
  args: string[];
}

interface JobManifest {
  apiVersion: string;
  kind: string;
  spec: {
    completionMode?: string;
    completions: number;
    parallelism: number;
    template: { spec: { restartPolicy: string; containers: Container[] } };
  };
}

const manifest = parse(
  readFileSync(join(PACKAGE_ROOT, "examples/shared-rewrap/rewrap-job.yaml"), "utf8"),
) as JobManifest;

test("the example Job runs several indexed workers", () => {
  assert.equal(manifest.apiVersion, "batch/v1");
  assert.equal(manifest.kind, "Job");
  assert.equal(manifest.spec.completionMode, "Indexed");
  assert.ok(manifest.spec.parallelism >= 2, "more than one worker at a time");
  assert.equal(manifest.spec.completions, manifest.spec.parallelism);
  assert.equal(manifest.spec.template.spec.restartPolicy, "Never");
});

test("its workers run kms-envelope rewrap --shared with flags the CLI declares", () => {
  const [container] = manifest.spec.template.spec.containers;
  assert.ok(container !== undefined);
  assert.deepEqual(container.command, ["kms-envelope"]);
  const [name, ...args] = container.args;
  assert.equal(name, "rewrap");
  const rewrap = buildProgram(undefined).commands.find((command) => command.name() === name);
  assert.ok(rewrap !== undefined);
  rewrap.exitOverride();
  const parsed = rewrap.parseOptions(args);
  assert.deepEqual(parsed.unknown, [], "every flag is one rewrap declares");
  assert.deepEqual(parsed.operands, []);
  const options = rewrap.opts();
  assert.equal(options.shared, true);
  assert.equal(options.workerId, "rewrap-$(JOB_COMPLETION_INDEX)", "one worker id per index");
  assert.equal(options.lease, 30_000);
  assert.equal(options.workers, 1);
  assert.equal(options.store, "$(KMSE_STORE_URL)");
});
