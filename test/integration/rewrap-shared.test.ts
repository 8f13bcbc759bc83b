/**
 * Shared rewrap (issue 15, "rewrap at scale"): several workers on one PostgreSQL store lease
 * batches of one run. Against a real PostgreSQL cluster, with records sealed by the engine
 * (secretbox) and the key then rotated: two workers side by side rewrap every record exactly
 * once (each record's version goes from 1 to 2, never 3); a worker SIGKILLed while it holds a
 * batch has that batch taken over once its lease expires; progress is the sum over workers; and
 * a worker whose lease expired or was taken over cannot commit.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import pg from "pg";
import { KmsEnvelopeError } from "../../src/errors.js";
import type { FieldCodec, JsonObject } from "../../src/fields/field-codec.js";
import { openFieldLayer } from "../../src/fields/open-field-layer.js";
import { PACKAGE_ROOT } from "../../src/package-info.js";
import { openRepository } from "../../src/store/open-repository.js";
import type { RecordRepository, RewrapLease, RewrapTarget } from "../../src/store/repository.js";
import { type RewrapSummary, rewrap } from "../../src/store/rewrap.js";
import { runCli, startCli, temporaryDirectory } from "../support/daemon-process.js";
import { type PostgresServer, startPostgres } from "../support/postgres-server.js";

const RESOURCE = "credentials";
const FIELD_MAP = `apiVersion: kms-envelope/v1
kind: FieldMap
resources:
  - resource: ${RESOURCE}
    route: engine
    fields:
      secrets: json
`;

function secretboxConfig(keys: readonly { name: string; secret: string }[]): string {
  return `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [${RESOURCE}]
    providers:
      - secretbox:
          keys:
${keys.map((key) => `            - { name: ${key.name}, secret: "${key.secret}" }`).join("\n")}
`;
}

const idOf = (index: number) => `cred-${String(index).padStart(5, "0")}`;

describe("shared rewrap on PostgreSQL", () => {
  let server: PostgresServer;
  let directory: Awaited<ReturnType<typeof temporaryDirectory>>;
  const fieldMapPath = () => join(directory.path, "fields.yaml");
  const key1 = { name: "key1", secret: randomBytes(32).toString("base64") };
  const key2 = { name: "key2", secret: randomBytes(32).toString("base64") };

  before(async () => {
    server = await startPostgres();
    directory = await temporaryDirectory();
    await writeFile(fieldMapPath(), FIELD_MAP);
  });
  after(async () => {
    await server?.stop();
    await directory?.remove();
  });

  /** Runs `body` with a repository on `url` and a field layer on `config`, both closed after. */
  async function withStore<T>(
    url: string,
    config: string,
    body: (repository: RecordRepository, codec: FieldCodec) => Promise<T>,
  ): Promise<T> {
    const repository = await openRepository(url);
    const codec = await openFieldLayer({
      fieldMapPath: fieldMapPath(),
      encryptionConfigPath: config,
    });
    try {
      return await body(repository, codec);
    } finally {
      await codec.close();
      await repository.close();
    }
  }

  /** What rewrap moves records to: the layer's current writer of the secrets field. */
  async function currentTarget(codec: FieldCodec): Promise<RewrapTarget> {
    return { writers: [{ path: "secrets", ...(await codec.currentWriter(RESOURCE, "secrets")) }] };
  }

  /** `rows` opened and sealed again by `codec`, under its current writer, in order. */
  async function reseal(codec: FieldCodec, rows: readonly { id: string; document: JsonObject }[]) {
    const opened = await codec.open(
      RESOURCE,
      rows.map((row) => ({ id: row.id, document: row.document, workspace: "w1" })),
    );
    return codec.seal(
      RESOURCE,
      opened.map((entry) => ({ id: entry.id, document: entry.document, workspace: "w1" })),
    );
  }

  /** A new database with `records` records under key1, and a configuration with key2 first. */
  async function rotatedStore(records: number): Promise<{ url: string; config: string }> {
    const url = server.tcpUrl(await server.createDatabase());
    const config = join(directory.path, `config-${randomBytes(4).toString("hex")}.yaml`);
    await writeFile(config, secretboxConfig([key1]));
    await withStore(url, config, async (repository, codec) => {
      for (let start = 0; start < records; start += 500) {
        const batch = Array.from({ length: Math.min(500, records - start) }, (_, offset) => ({
          id: idOf(start + offset),
          workspace: "w1",
          document: { name: idOf(start + offset), secrets: { token: `t-${start + offset}` } },
        }));
        const sealed = await codec.seal(RESOURCE, batch);
        await repository.insert(
          RESOURCE,
          sealed.map((record) => ({
            id: record.id,
            subjectId: null,
            workspace: "w1",
            document: record.document,
            stamps: record.stamps,
          })),
        );
      }
    });
    await writeFile(config, secretboxConfig([key2, key1]));
    return { url, config };
  }

  /** Every record's version and writer, straight from the database. */
  async function versions(url: string): Promise<Map<string, { version: number; keyId: string }>> {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      const { rows } = await client.query<{ id: string; version: number; key_id: string }>(
        "SELECT r.id, r.version, s.key_id FROM kmse_records r JOIN kmse_field_stamps s ON s.resource = r.resource AND s.record_id = r.id ORDER BY r.id",
      );
      return new Map(rows.map((row) => [row.id, { version: row.version, keyId: row.key_id }]));
    } finally {
      await client.end();
    }
  }

  /** One worker in this process, on its own connections. */
  async function worker(
    url: string,
    config: string,
    workerId: string,
    leaseMs = 30_000,
    batchSize = 50,
  ): Promise<RewrapSummary> {
    return withStore(url, config, (repository, codec) =>
      rewrap({ repository, codec, batchSize, shared: { workerId, leaseMs } }),
    );
  }

  function assertAllRewrappedOnce(
    all: Map<string, { version: number; keyId: string }>,
    records: number,
  ): void {
    assert.equal(all.size, records);
    const keyIds = new Set([...all.values()].map((entry) => entry.keyId));
    assert.equal(keyIds.size, 1, `every field under one writer: ${[...keyIds].join(", ")}`);
    const wrong = [...all].filter(([, entry]) => entry.version !== 2);
    assert.deepEqual(wrong.slice(0, 5), [], "every record written exactly once (version 2)");
  }

  test("two workers side by side rewrap every record exactly once, and each sees the sum", async () => {
    const records = 4_000;
    const { url, config } = await rotatedStore(records);
    const [first, second] = await Promise.all([
      worker(url, config, "worker-a"),
      worker(url, config, "worker-b"),
    ]);
    const a = first.resources[0];
    const b = second.resources[0];
    assert.ok(a?.shared !== undefined && b?.shared !== undefined);
    assert.equal(a.shared.runId, b.shared.runId, "one run shared by both");
    assert.ok(a.shared.batchesLeased > 0, "worker a leased batches");
    assert.ok(b.shared.batchesLeased > 0, "worker b leased batches");
    assert.equal(a.shared.batchesLeased + b.shared.batchesLeased, a.shared.run.batches);
    assert.equal(a.recordsRewrapped + b.recordsRewrapped, records);
    for (const summary of [a, b]) {
      assert.equal(summary.shared?.run.recordsRewrapped, records, "progress summed over workers");
      assert.equal(summary.shared?.run.batchesDone, summary.shared?.run.batches);
      assert.equal(summary.remaining, 0);
    }
    assertAllRewrappedOnce(await versions(url), records);

    // The run is finished: a later worker plans a new one and finds nothing to do.
    const later = (await worker(url, config, "worker-c")).resources[0];
    assert.equal(later?.shared?.generation, 2);
    assert.equal(later?.shared?.run.batches, 0);
    assert.equal(later?.recordsRewrapped, 0);
  });

  test("a worker SIGKILLed mid-batch has its batch taken over when the lease expires", async () => {
    const records = 600;
    const batchSize = 100;
    const leaseMs = 1_500;
    const { url, config } = await rotatedStore(records);
    const child = spawn(
      process.execPath,
      [
        ...["--import", "tsx", join(PACKAGE_ROOT, "test/fixtures/stalled-rewrap-worker.ts")],
        ...[url, fieldMapPath(), config, "doomed", String(leaseMs), String(batchSize), "2"],
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const exited = new Promise<NodeJS.Signals | null>((resolve) =>
      child.once("exit", (_, signal) => resolve(signal)),
    );
    await new Promise<void>((resolve, reject) => {
      child.stdout.on("data", (chunk: Buffer) => {
        if (chunk.toString().includes("stalled")) resolve();
      });
      child.once("exit", () => reject(new Error(`the stalled worker exited early: ${stderr}`)));
    });
    child.kill("SIGKILL");
    assert.equal(await exited, "SIGKILL");

    const before = await versions(url);
    const doneByDoomed = [...before.values()].filter((entry) => entry.version === 2).length;
    assert.equal(doneByDoomed, 2 * batchSize, "the killed worker committed its first two batches");

    const started = Date.now();
    const summary = (await worker(url, config, "survivor", leaseMs, batchSize)).resources[0];
    assert.ok(summary?.shared !== undefined);
    assert.equal(summary.shared.leasesTakenOver, 1, "the killed worker's batch was taken over");
    assert.equal(summary.recordsRewrapped, records - doneByDoomed, "nothing redone");
    assert.equal(summary.shared.run.recordsRewrapped, records, "the run counts both workers");
    assert.equal(summary.shared.run.batchesDone, records / batchSize);
    assert.equal(summary.remaining, 0);
    assert.ok(Date.now() - started < 20_000);
    assertAllRewrappedOnce(await versions(url), records);
  });

  describe("fencing", () => {
    let repository: RecordRepository;
    let codec: FieldCodec;
    let target: RewrapTarget;
    let url: string;

    before(async () => {
      const store = await rotatedStore(10);
      url = store.url;
      repository = await openRepository(url);
      codec = await openFieldLayer({
        fieldMapPath: fieldMapPath(),
        encryptionConfigPath: store.config,
      });
      target = await currentTarget(codec);
    });
    after(async () => {
      await codec?.close();
      await repository?.close();
    });

    /** A resealed replacement of the first record, at the version read. */
    async function replacement() {
      const [row] = await repository.getMany(RESOURCE, [idOf(0)]);
      assert.ok(row !== undefined);
      const [sealed] = await reseal(codec, [row]);
      assert.ok(sealed !== undefined);
      return [
        {
          id: row.id,
          expectedVersion: row.version,
          document: sealed.document,
          stamps: sealed.stamps,
        },
      ];
    }

    const lost = (error: unknown) =>
      error instanceof KmsEnvelopeError &&
      error.code === "STORE_CONFLICT" &&
      /lost its lease/.test(error.message);

    test("a worker whose lease expired, or was then taken over, cannot commit", async () => {
      const shared = repository.sharedRewrap;
      assert.ok(shared !== undefined, "PostgreSQL supports shared rewrap");
      const run = await shared.openRun(RESOURCE, target, 100);
      assert.equal(run.batches, 1);
      const stale = await shared.claim(run.runId, "slow", 300);
      assert.ok(stale !== undefined);
      assert.equal(await shared.claim(run.runId, "other", 300), undefined, "leased, not free");
      const writes = await replacement();
      await new Promise((resolve) => setTimeout(resolve, 400));

      await assert.rejects(shared.replaceLeased(RESOURCE, stale, writes), lost, "expired");
      const fresh = await shared.claim(run.runId, "fast", 30_000);
      assert.ok(fresh !== undefined);
      assert.equal(fresh.takenOver, true);
      assert.equal(fresh.generation, stale.generation + 1);
      await assert.rejects(shared.replaceLeased(RESOURCE, stale, writes), lost, "taken over");
      await assert.rejects(shared.complete(stale, 0), lost, "cannot finish it either");
      assert.equal((await versions(url)).get(idOf(0))?.version, 1, "nothing was written");
      assert.equal((await shared.runProgress(run.runId)).recordsRewrapped, 0);

      const outcome = await shared.replaceLeased(RESOURCE, fresh, writes);
      assert.equal(outcome.written.get(idOf(0)), 2);
      await shared.complete(fresh, 0);
      const progress = await shared.runProgress(run.runId);
      assert.equal(progress.recordsRewrapped, 1);
      assert.equal(progress.batchesDone, 1);
    });
  });

  test("a batch's last write marks it done in the same commit, unless a record conflicted", async () => {
    const store = await rotatedStore(3);
    await withStore(store.url, store.config, async (repository, codec) => {
      const shared = repository.sharedRewrap;
      assert.ok(shared !== undefined);
      const target = await currentTarget(codec);
      const run = await shared.openRun(RESOURCE, target, 100);
      const lease = await shared.claim(run.runId, "one", 30_000);
      assert.ok(lease !== undefined);
      const rows = await repository.getMany(RESOURCE, [idOf(0), idOf(1), idOf(2)]);
      const writes = (await reseal(codec, rows)).map((entry, index) => ({
        id: entry.id,
        // The third as if read before someone else's write: a conflict.
        expectedVersion: index === 2 ? 7 : 1,
        document: entry.document,
        stamps: entry.stamps,
      }));

      const first = await shared.replaceLeased(RESOURCE, lease, writes.slice(0, 1));
      assert.equal(first.done, false, "not the last write: the batch stays open");
      const conflicted = await shared.replaceLeased(RESOURCE, lease, writes.slice(1), {
        failed: 1,
      });
      assert.deepEqual(conflicted.conflicts, [idOf(2)]);
      assert.equal(conflicted.done, false, "a conflict is retried before the batch is done");
      assert.equal((await shared.runProgress(run.runId)).batchesDone, 0);

      const retried = await shared.replaceLeased(
        RESOURCE,
        lease,
        [{ ...(writes[2] as (typeof writes)[number]), expectedVersion: 1 }],
        { failed: 1 },
      );
      assert.equal(retried.done, true);
      const progress = await shared.runProgress(run.runId);
      assert.equal(progress.batchesDone, 1);
      assert.equal(progress.recordsRewrapped, 3);
      assert.equal(progress.conflictsRetried, 1);
      assert.equal(progress.failed, 1, "failures counted once, when the batch is done");
      await assert.rejects(shared.complete(lease, 0), /lost its lease/, "done is final");
    });
  });

  test("a batch's last write can claim the worker's next batch in the same commit", async () => {
    const store = await rotatedStore(4);
    await withStore(store.url, store.config, async (repository, codec) => {
      const shared = repository.sharedRewrap;
      assert.ok(shared !== undefined);
      const target = await currentTarget(codec);
      const run = await shared.openRun(RESOURCE, target, 2);
      assert.equal(run.batches, 2);
      const resealed = async (lease: RewrapLease) => {
        const rows = await shared.readLeased(RESOURCE, target, lease, lease.afterId, 2);
        return (await reseal(codec, rows)).map((entry) => ({ ...entry, expectedVersion: 1 }));
      };
      const first = await shared.claim(run.runId, "one", 30_000);
      assert.ok(first !== undefined);
      const outcome = await shared.replaceLeased(RESOURCE, first, await resealed(first), {
        failed: 0,
        claimNext: true,
      });
      assert.equal(outcome.done, true);
      assert.equal(outcome.next?.batch, 1, "the next batch, claimed with the write");
      assert.equal(outcome.next?.generation, 1);
      assert.equal(outcome.next?.takenOver, false);
      assert.equal(await shared.claim(run.runId, "two", 30_000), undefined, "none left free");
      const last = await shared.replaceLeased(
        RESOURCE,
        outcome.next as RewrapLease,
        await resealed(outcome.next as RewrapLease),
        { failed: 0, claimNext: true },
      );
      assert.equal(last.done, true);
      assert.equal(last.next, undefined, "nothing left to claim");
      const progress = await shared.runProgress(run.runId);
      assert.equal(progress.batchesDone, 2);
      assert.equal(progress.recordsRewrapped, 4);
    });
  });

  for (const signal of ["SIGTERM", "SIGINT"] as const)
    test(`a worker stopped by ${signal} finishes its batch in flight and holds no lease`, async () => {
      const records = 6_000;
      const { url, config } = await rotatedStore(records);
      const cli = startCli([
        ...["rewrap", "--shared", "--json", "--store", url, "--fields", fieldMapPath()],
        ...["--encryption-config", config, "--batch-size", "50", "--lease", "60s"],
        ...["--worker-id", "stopped"],
      ]);
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        // Stopped once it has finished some batches, while it is working through the rest.
        for (;;) {
          const { rows } = await client
            .query<{ done: number }>(
              "SELECT count(*)::int AS done FROM kmse_rewrap_leases WHERE done_at IS NOT NULL",
            )
            .catch(() => ({ rows: [{ done: 0 }] }));
          if ((rows[0]?.done ?? 0) >= 2) break;
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
        cli.child.kill(signal);
        assert.equal(await cli.exited, 1, cli.stderr());
        const stopped = JSON.parse(cli.stdout()) as RewrapSummary;
        assert.equal(stopped.interrupted, true);
        assert.match(cli.stderr(), /rewrap was interrupted; run it again to continue/);
        const { rows } = await client.query<{ held: number }>(
          "SELECT count(*)::int AS held FROM kmse_rewrap_leases WHERE done_at IS NULL AND expires_at > clock_timestamp()",
        );
        assert.equal(rows[0]?.held, 0, "every batch it leased is done: none waits for its lease");
      } finally {
        await client.end();
      }
      // A 60 s lease left behind would hold the run up for a minute.
      const started = Date.now();
      const summary = (await worker(url, config, "next", 60_000)).resources[0];
      assert.equal(summary?.shared?.leasesTakenOver, 0);
      assert.equal(summary?.shared?.run.recordsRewrapped, records);
      assert.ok(Date.now() - started < 20_000);
      assertAllRewrappedOnce(await versions(url), records);
    });

  test("a worker that fails gives its batch back, so another takes it over at once", async () => {
    const { url, config } = await rotatedStore(300);
    await withStore(url, config, async (repository, layer) => {
      let seals = 0;
      const failing = new Proxy(layer, {
        get(target, property, receiver) {
          if (property === "seal")
            return (...args: Parameters<FieldCodec["seal"]>) =>
              ++seals === 1
                ? layer.seal(...args)
                : Promise.reject(new KmsEnvelopeError("KMS_PLUGIN_FAILED", "the plugin is down"));
          // The layer's methods read its private fields, so they run on the layer, not the proxy.
          const value: unknown = Reflect.get(target, property, receiver);
          return typeof value === "function" ? value.bind(target) : value;
        },
      });
      await assert.rejects(
        rewrap({
          repository,
          codec: failing,
          batchSize: 100,
          shared: { workerId: "failing", leaseMs: 60_000 },
        }),
        (error: unknown) => error instanceof KmsEnvelopeError && error.code === "KMS_PLUGIN_FAILED",
      );
    });
    const started = Date.now();
    const summary = (await worker(url, config, "next", 60_000, 100)).resources[0];
    // Given back as never claimed: not waited for, and not counted as taken over.
    assert.equal(summary?.shared?.leasesTakenOver, 0);
    assert.equal(summary?.shared?.batchesLeased, 2);
    assert.equal(summary?.recordsRewrapped, 200);
    assert.ok(Date.now() - started < 20_000);
    assertAllRewrappedOnce(await versions(url), 300);
  });

  test("SQLite refuses --shared: exit 2 with one line naming it", async () => {
    const store = `sqlite://${join(directory.path, "store.db")}`;
    await (await openRepository(store)).close();
    const config = join(directory.path, "sqlite-config.yaml");
    await writeFile(config, secretboxConfig([key1]));
    const result = await runCli([
      ...["rewrap", "--shared", "--fields", fieldMapPath()],
      ...["--encryption-config", config, "--store", store],
    ]);
    assert.equal(result.code, 2, result.stderr);
    assert.match(result.stderr, /^kms-envelope: [^\n]*--shared[^\n]*\n$/);
  });
});
