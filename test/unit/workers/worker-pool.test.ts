import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { WorkerPool } from "../../../src/workers/worker-pool.js";
import type { TestJob } from "./test-worker.js";

const pools: WorkerPool<{ tag: string }, TestJob, string>[] = [];
after(async () => {
  for (const pool of pools) await pool.close();
});

async function startPool(options: { size?: number; maxQueued?: number; tag?: { tag: string } }) {
  const keys = options.tag ?? { tag: "k1" };
  const lost: { exitCode?: number; error?: Error }[] = [];
  const pool = await WorkerPool.start<{ tag: string }, TestJob, string>({
    name: "test worker",
    script: new URL("./test-worker.js", import.meta.url),
    size: options.size ?? 1,
    maxQueued: options.maxQueued,
    keys: () => ({ value: { tag: keys.tag } }),
    overloaded: () => new Error("overloaded: retry later"),
    closed: () => new Error("closed"),
    onWorkerLost: (detail) => lost.push(detail),
  });
  pools.push(pool);
  return { pool, keys, lost };
}

const echo = (value: string) => ({ value: { op: "echo", value } as TestJob });

describe("WorkerPool", () => {
  test("jobs run in workers holding the key set, and answers come back in order", async () => {
    const { pool } = await startPool({ size: 2 });
    assert.equal(pool.idle, 2);
    const answers = await Promise.all(["a", "b", "c", "d"].map((v) => pool.run(echo(v))));
    assert.deepEqual(answers, ["k1:a", "k1:b", "k1:c", "k1:d"]);
  });

  test("idle counts loaded workers with no job, less the jobs waiting", async () => {
    const { pool } = await startPool({ size: 2 });
    const running = pool.run({ value: { op: "spin", ms: 200 } });
    assert.equal(pool.idle, 1);
    const second = pool.run({ value: { op: "spin", ms: 200 } });
    const third = pool.run(echo("x"));
    assert.equal(pool.idle, 0);
    await Promise.all([running, second, third]);
    assert.equal(pool.idle, 2);
  });

  test("stats count workers, busy ones, waiting jobs, busy time and restarts", async () => {
    const { pool } = await startPool({ size: 2 });
    assert.deepEqual(pool.stats(), { workers: 2, busy: 0, queued: 0, restarts: 0, busySeconds: 0 });
    const spins = [200, 200, 200].map((ms) => pool.run({ value: { op: "spin", ms } }));
    const during = pool.stats();
    assert.equal(during.busy, 2);
    assert.equal(during.queued, 1);
    await Promise.all(spins);
    const idle = pool.stats();
    assert.equal(idle.busy, 0);
    // Three jobs of 200 ms each (timers may round a little down).
    assert.ok(idle.busySeconds >= 0.58 && idle.busySeconds < 5, `busy ${idle.busySeconds} s`);
    await assert.rejects(pool.run({ value: { op: "die" } }));
    assert.equal(pool.stats().restarts, 1);
  });

  test("past maxQueued waiting jobs, run rejects with the overloaded error", async () => {
    const { pool } = await startPool({ maxQueued: 3 });
    const settled = await Promise.allSettled([
      pool.run({ value: { op: "spin", ms: 100 } }),
      ...Array.from({ length: 6 }, () => pool.run(echo("q"))),
    ]);
    const refused = settled.filter((result) => result.status === "rejected");
    assert.equal(refused.length, 3, "one running, three waiting, three refused");
    assert.match(String((refused[0] as PromiseRejectedResult).reason), /overloaded: retry later/);
    assert.equal(settled.filter((result) => result.status === "fulfilled").length, 4);
  });

  test("a worker that dies mid-job fails that job (no hang) and is replaced after a pause", async () => {
    const { pool, lost } = await startPool({});
    const dying = pool.run({ value: { op: "die" } });
    const waiting = pool.run(echo("after"));
    await assert.rejects(dying, /test worker stopped \(exit code 3\) while running this call/);
    assert.deepEqual(lost, [{ exitCode: 3 }]);
    // The job queued behind the dead one is served by the replacement, started after the
    // pause a young death earns.
    const started = performance.now();
    assert.equal(await waiting, "k1:after");
    assert.ok(performance.now() - started > 500, "restarted after a pause, not at once");
    assert.equal(await pool.run(echo("again")), "k1:again");
  });

  test("replaceKeys sends every worker the new key set; later jobs see it", async () => {
    const { pool, keys } = await startPool({ size: 2 });
    keys.tag = "k2";
    pool.replaceKeys();
    const answers = await Promise.all(["a", "b", "c", "d"].map((v) => pool.run(echo(v))));
    assert.deepEqual(answers, ["k2:a", "k2:b", "k2:c", "k2:d"]);
  });

  test("close refuses waiting and later jobs, and resolves once the workers have stopped", async () => {
    const { pool } = await startPool({});
    const running = pool.run({ value: { op: "spin", ms: 100 } });
    const waiting = pool.run(echo("w")).catch((error: unknown) => error);
    await pool.close();
    assert.match(String(await waiting), /closed/);
    // The job the worker had started settles either way: it never leaves its caller waiting.
    await Promise.allSettled([running]);
    await assert.rejects(pool.run(echo("late")), /closed/);
    assert.equal(pool.idle, 0);
  });
});
