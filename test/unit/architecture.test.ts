import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { describe, test } from "node:test";
import { PACKAGE_ROOT } from "../../src/package-info.js";

// The house keeps its shape (../shared/STYLE.md, the architecture review's #8): import
// directions between the source folders, and no import cycles. Read from the files themselves,
// so a new import that breaks a rule fails here, in `npm run check`.

const ROOTS = ["src", "providers"];
// Static imports and re-exports; dynamic import() of a literal too. Type-only imports count:
// a layer that names another's types depends on it.
const IMPORT =
  /(?:^|\n)\s*(?:import|export)\b[^;]*?\bfrom\s+"([^"]+)"|\bimport\(\s*"([^"]+)"\s*\)/g;

function sourceFiles(directory: string): string[] {
  return readdirSync(join(PACKAGE_ROOT, directory), { withFileTypes: true }).flatMap((entry) => {
    const path = join(directory, entry.name);
    if (entry.isDirectory())
      return path.endsWith(join("wire", "generated")) ? [] : sourceFiles(path);
    return entry.name.endsWith(".ts") ? [path] : [];
  });
}

/** Every file's imports of other files of the project, as paths relative to the root. */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of ROOTS.flatMap(sourceFiles)) {
    const text = readFileSync(join(PACKAGE_ROOT, file), "utf8");
    const targets: string[] = [];
    for (const match of text.matchAll(IMPORT)) {
      const specifier = match[1] ?? match[2] ?? "";
      if (!specifier.startsWith(".")) continue;
      const target = relative(PACKAGE_ROOT, resolve(PACKAGE_ROOT, dirname(file), specifier));
      targets.push(target.replace(/\.js$/, ".ts"));
    }
    graph.set(file, targets);
  }
  return graph;
}

const graph = importGraph();

function importsOf(folder: string): [string, string][] {
  return [...graph].flatMap(([file, targets]) =>
    file.startsWith(`${folder}/`) ? targets.map((target): [string, string] => [file, target]) : [],
  );
}

function violations(folder: string, allowed: (target: string) => boolean): string[] {
  return importsOf(folder)
    .filter(([, target]) => !allowed(target))
    .map(([file, target]) => `${file} -> ${target}`);
}

describe("architecture: import directions", () => {
  test("the graph was read: every source folder has files and imports", () => {
    for (const folder of ["src/crypto", "src/wire", "src/server", "src/engine", "src/cli"])
      assert.ok(importsOf(folder).length > 0, `${folder} has imports`);
  });

  test("crypto/ imports only errors.ts and itself: the core has no I/O and no gRPC", () => {
    assert.deepEqual(
      violations(
        "src/crypto",
        (target) => target === "src/errors.ts" || target.startsWith("src/crypto/"),
      ),
      [],
    );
  });

  test("wire/ imports nothing above it: only errors.ts, package-info.ts and itself", () => {
    const below = ["src/errors.ts", "src/package-info.ts"];
    assert.deepEqual(
      violations("src/wire", (target) => below.includes(target) || target.startsWith("src/wire/")),
      [],
    );
  });

  test("nothing below the command line imports it", () => {
    const outside = [...graph.keys()].filter((file) => !file.startsWith("src/cli/"));
    const offenders = outside.flatMap((file) =>
      (graph.get(file) ?? [])
        .filter((target) => target.startsWith("src/cli/"))
        .map((target) => `${file} -> ${target}`),
    );
    assert.deepEqual(offenders, []);
  });

  for (const folder of ["src/engine", "src/fields", "src/conformance", "src/keys", "src/store"]) {
    test(`${folder}/ never imports the server: clients stand on wire/`, () => {
      assert.deepEqual(
        violations(folder, (target) => !target.startsWith("src/server/")),
        [],
      );
    });
  }
});

/** Every set of files that import each other in a circle (Tarjan's strongly connected components). */
function findCycles(edges: ReadonlyMap<string, readonly string[]>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[][] = [];
  const visit = (file: string): void => {
    index.set(file, index.size);
    low.set(file, index.get(file) as number);
    stack.push(file);
    onStack.add(file);
    for (const target of edges.get(file) ?? []) {
      if (!edges.has(target)) continue;
      if (!index.has(target)) {
        visit(target);
        low.set(file, Math.min(low.get(file) as number, low.get(target) as number));
      } else if (onStack.has(target)) {
        low.set(file, Math.min(low.get(file) as number, index.get(target) as number));
      }
    }
    if (low.get(file) !== index.get(file)) return;
    const component: string[] = [];
    let member: string;
    do {
      member = stack.pop() as string;
      onStack.delete(member);
      component.push(member);
    } while (member !== file);
    if (component.length > 1) cycles.push(component.sort());
  };
  for (const file of edges.keys()) if (!index.has(file)) visit(file);
  return cycles;
}

describe("architecture: no import cycles", () => {
  test("the cycle check finds a circle when there is one, however long", () => {
    const edges = new Map([
      ["a", ["b"]],
      ["b", ["c"]],
      ["c", ["a", "d"]],
      ["d", []],
    ]);
    assert.deepEqual(findCycles(edges), [["a", "b", "c"]]);
    assert.deepEqual(
      findCycles(
        new Map([
          ["a", ["b"]],
          ["b", []],
        ]),
      ),
      [],
    );
  });

  test("the import graph of src/ and providers/ has no cycle", () => {
    assert.deepEqual(findCycles(graph), []);
  });

  test("every relative import names a file that exists (the graph is complete)", () => {
    const missing = [...graph].flatMap(([file, targets]) =>
      targets
        .filter((target) => !graph.has(target) && !target.startsWith("src/wire/generated/"))
        .map((target) => `${file} -> ${target}`),
    );
    assert.deepEqual(missing, []);
  });
});

describe("architecture: generated wire types", () => {
  test("src/wire/generated is exactly what `npm run generate` writes from proto/ (never edited by hand)", () => {
    const scratch = mkdtempSync(join(tmpdir(), "kms-envelope-generated-"));
    try {
      const script = (
        JSON.parse(readFileSync(join(PACKAGE_ROOT, "package.json"), "utf8")) as {
          scripts: Record<string, string>;
        }
      ).scripts.generate as string;
      const args = script.split(" ").slice(1);
      args[args.indexOf("src/wire/generated/")] = scratch;
      const run = spawnSync(join(PACKAGE_ROOT, "node_modules/.bin/proto-loader-gen-types"), args, {
        cwd: PACKAGE_ROOT,
        encoding: "utf8",
      });
      assert.equal(run.status, 0, run.stderr);
      const committed = join(PACKAGE_ROOT, "src/wire/generated");
      const files = (root: string) =>
        readdirSync(root, { recursive: true, withFileTypes: true })
          .filter((entry) => entry.isFile())
          .map((entry) => relative(root, join(entry.parentPath, entry.name)))
          .sort();
      assert.deepEqual(files(committed), files(scratch));
      for (const file of files(scratch))
        assert.equal(
          readFileSync(join(committed, file), "utf8"),
          readFileSync(join(scratch, file), "utf8"),
          `${file} differs: run npm run generate`,
        );
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  });
});

describe("architecture: no dead exports", () => {
  const EXPORTED =
    /^export (?:async )?(?:abstract )?(?:const|function|class|interface|type) (\w+)/gm;
  const USERS = ["src", "providers", "test", "bench", "examples"];

  function filesUnder(directory: string): string[] {
    return readdirSync(join(PACKAGE_ROOT, directory), { withFileTypes: true }).flatMap((entry) => {
      const path = join(directory, entry.name);
      if (entry.isDirectory()) return entry.name === "node_modules" ? [] : filesUnder(path);
      return /\.(ts|mjs)$/.test(entry.name) ? [path] : [];
    });
  }

  test("every name a source module exports is used by another file (or is an entry's)", () => {
    const texts = new Map(
      USERS.flatMap(filesUnder).map((file) => [
        file,
        readFileSync(join(PACKAGE_ROOT, file), "utf8"),
      ]),
    );
    const unused = ROOTS.flatMap(sourceFiles).flatMap((file) =>
      [...(texts.get(file) ?? "").matchAll(EXPORTED)]
        .map((match) => match[1] as string)
        .filter((name) => {
          const word = new RegExp(`\\b${name}\\b`);
          return ![...texts].some(([other, text]) => other !== file && word.test(text));
        })
        .map((name) => `${file}: ${name}`),
    );
    assert.deepEqual(unused, [], "drop the export (or the code) of these");
  });
});
