import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

// Sources run from src/ under tsx and from dist/src/ when built, at different depths, so the
// package root is found by walking up to our package.json rather than by a fixed "../..".
function findPackageRoot(): string {
  let directory = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(directory, "package.json");
    if (existsSync(candidate)) {
      const manifest = JSON.parse(readFileSync(candidate, "utf8")) as { name?: string };
      if (manifest.name === "kms-envelope") return directory;
    }
    const parent = dirname(directory);
    if (parent === directory)
      throw new Error("kms-envelope package.json not found above the sources");
    directory = parent;
  }
}

/** Absolute path of the installed package (holds proto/ and config/). */
export const PACKAGE_ROOT = findPackageRoot();

/** The package version, reported as the v1beta1 runtime_version. */
export const PACKAGE_VERSION = (
  JSON.parse(readFileSync(join(PACKAGE_ROOT, "package.json"), "utf8")) as { version: string }
).version;
