import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { test } from "node:test";
import { PACKAGE_ROOT } from "../../src/package-info.js";

// The Node version the package promises, held against what npm checks at `npm ci` (every
// locked package's `engines.node`, with the semver npm itself uses), the README and the image.
// semver comes with the production dependencies (jsonwebtoken, node-abi); it has no types here.
const semver = createRequire(import.meta.url)("semver") as {
  satisfies(version: string, range: string, options: { includePrerelease: boolean }): boolean;
};

const read = (path: string) => readFileSync(join(PACKAGE_ROOT, path), "utf8");
const manifest = JSON.parse(read("package.json")) as { engines: { node: string } };
const lock = JSON.parse(read("package-lock.json")) as {
  packages: Record<string, { version?: string; engines?: { node?: unknown } | unknown[] }>;
};
const minimum = /^>=(\d+)\.(\d+)$/.exec(manifest.engines.node);

test("engines.node is a plain minimum, and the README promises the same one", () => {
  assert.ok(minimum, `engines.node ${manifest.engines.node} is not >=MAJOR.MINOR`);
  const [, major, minor] = minimum;
  assert.match(read("README.md"), new RegExp(`Node\\.js ${major}\\.${minor} or newer`));
});

test("every locked package runs on the minimum and on the image's Node: npm ci warns of none", () => {
  assert.ok(minimum);
  const imageMajor = /ARG NODE_IMAGE=node:(\d+)-/.exec(read("Dockerfile"))?.[1];
  assert.ok(imageMajor, "the Dockerfile names its Node image");
  const versions = [`${minimum[1]}.${minimum[2]}.0`, `${imageMajor}.0.0`];
  const refused = Object.entries(lock.packages).flatMap(([path, entry]) => {
    const range = Array.isArray(entry.engines) ? undefined : entry.engines?.node;
    if (typeof range !== "string") return [];
    return versions
      .filter((version) => !semver.satisfies(version, range, { includePrerelease: true }))
      .map((version) => `${path}@${entry.version}: engines.node ${range} refuses ${version}`);
  });
  assert.deepEqual(refused, []);
});
