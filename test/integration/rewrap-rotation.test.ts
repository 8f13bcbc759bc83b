/**
 * Issue 5's rotation test, end to end with the real pieces: the daemon (keyring, local
 * provider, hot reload), the field layer (field-service route) as the store's codec, and the
 * `kms-envelope rotate` / `rewrap` / `retire` commands as child processes. 10,000 records are
 * written, the master key is rotated, and rewrap runs while a writer and a reader keep going;
 * rewrap is SIGKILLed halfway and run again. At the end every record decrypts to what was last
 * written, none is under the old key (which is then retired), and the reader never saw an error.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { KmsEnvelopeError } from "../../src/errors.js";
import type { FieldCodec } from "../../src/fields/field-codec.js";
import { openFieldLayer } from "../../src/fields/open-field-layer.js";
import { PACKAGE_ROOT } from "../../src/package-info.js";
import { EncryptedStore } from "../../src/store/encrypted-store.js";
import { openRepository } from "../../src/store/open-repository.js";
import type { PathWriter, RecordRepository } from "../../src/store/repository.js";
import {
  DaemonProcess,
  newMasterKey,
  runCli,
  temporaryDirectory,
} from "../support/daemon-process.js";
import { storeBackends } from "../support/store-backends.js";

const RECORDS = 10_000;
const RESOURCE = "credentials";
const FIELD_MAP = `apiVersion: kms-envelope/v1
kind: FieldMap
resources:
  - resource: ${RESOURCE}
    route: field-service
    fields:
      secrets: json
`;

const idOf = (index: number) => `cred-${String(index).padStart(5, "0")}`;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function eventually(check: () => Promise<boolean>, what: string, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** Opens every record in batches; returns id → token, throwing on any failure. */
async function openAll(
  repository: RecordRepository,
  codec: FieldCodec,
): Promise<Map<string, string>> {
  const tokens = new Map<string, string>();
  let cursor = "";
  for (;;) {
    const ids = await repository.recordIds(RESOURCE, cursor, 1_000);
    if (ids.length === 0) return tokens;
    cursor = ids[ids.length - 1] as string;
    const rows = await repository.getMany(RESOURCE, ids);
    const opened = await codec.open(
      RESOURCE,
      rows.map((row) => ({ id: row.id, document: row.document, workspace: row.workspace ?? "" })),
    );
    for (const record of opened) {
      tokens.set(record.id, (record.document.secrets as { token: string }).token);
    }
  }
}

/** Starts `kms-envelope rewrap` from source as a child process. */
function startRewrap(args: string[]): ChildProcess {
  return spawn(
    process.execPath,
    ["--import", "tsx", join(PACKAGE_ROOT, "src/cli/main.ts"), "rewrap", ...args],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
}

for (const backend of storeBackends()) {
  describe(`rotation without downtime (${backend.name}): rotate, rewrap killed halfway and resumed, with a live writer and reader`, () => {
    let directory: Awaited<ReturnType<typeof temporaryDirectory>>;
    let storeUrl: string;
    let daemon: DaemonProcess;
    let codec: FieldCodec;
    let repository: RecordRepository;
    const env = { ENCRYPTION_MASTER_KEY: newMasterKey() };
    let keyring: string;
    let fieldMap: string;

    before(async () => {
      directory = await temporaryDirectory();
      storeUrl = await backend.newStore();
      keyring = join(directory.path, "keyring.yaml");
      fieldMap = join(directory.path, "field-map.yaml");
      await writeFile(fieldMap, FIELD_MAP);
      const created = await runCli(
        [
          "keygen",
          "--provider",
          "local",
          "--key-ref",
          "env:ENCRYPTION_MASTER_KEY",
          "--keyring",
          keyring,
        ],
        env,
      );
      assert.equal(created.code, 0, created.stderr);
      daemon = await DaemonProcess.start({
        socketPath: join(directory.path, "kms.sock"),
        env,
        args: ["--keyring", keyring, "--keyring-poll-interval", "200ms", "--log-level", "info"],
      });
      codec = await openFieldLayer({ fieldMapPath: fieldMap, daemonSocket: daemon.socketPath });
      repository = await openRepository(storeUrl);
    });
    after(async () => {
      await repository?.close();
      await codec?.close();
      await daemon?.stop();
      await backend.tearDown();
      await directory?.remove();
    });

    test("every record ends under the new key and decrypts; the reader never fails", async (t) => {
      // 1. 10,000 credentials under the first key.
      const expected = new Map<string, string>();
      for (let start = 0; start < RECORDS; start += 500) {
        const batch = Array.from({ length: 500 }, (_, offset) => {
          const id = idOf(start + offset);
          expected.set(id, `${id}-v0`);
          return {
            id,
            workspace: `ws-${(start + offset) % 7}`,
            document: { name: id, secrets: { token: `${id}-v0`, user: "svc" } },
          };
        });
        const sealed = await codec.seal(RESOURCE, batch);
        await repository.insert(
          RESOURCE,
          sealed.map((record, index) => ({
            id: record.id,
            subjectId: `subject-${index % 10}`,
            workspace: batch[index]?.workspace ?? null,
            document: record.document,
            stamps: record.stamps,
          })),
        );
      }
      const oldKey = (await codec.currentWriter(RESOURCE, "secrets")).keyId;

      // 2. Rotate: the daemon reloads the keyring and seals under a new primary.
      const rotated = await runCli(["rotate", "--keyring", keyring], env);
      assert.equal(rotated.code, 0, rotated.stderr);
      let newKey = oldKey;
      await eventually(async () => {
        newKey = (await codec.currentWriter(RESOURCE, "secrets")).keyId;
        return newKey !== oldKey;
      }, "the daemon to pick up the rotated keyring");
      const current: PathWriter[] = [{ path: "secrets", provider: "field-service", keyId: newKey }];
      assert.equal(await repository.countRecordsNotUnder(RESOURCE, { writers: current }), RECORDS);

      // 3. The application keeps writing and reading throughout.
      const app = new EncryptedStore({ repository: await openRepository(storeUrl), codec });
      let running = true;
      const readerErrors: unknown[] = [];
      const counts = { reads: 0, writes: 0, writeConflicts: 0 };
      const reader = (async () => {
        for (let n = 0; running; n++) {
          const id = idOf((n * 7919) % RECORDS);
          try {
            const record = await app.read(RESOURCE, id);
            const token = (record?.document.secrets as { token?: string } | undefined)?.token;
            if (!token?.startsWith(`${id}-v`)) readerErrors.push(new Error(`${id} read ${token}`));
            counts.reads++;
          } catch (error) {
            readerErrors.push(error);
          }
        }
      })();
      const writer = (async () => {
        for (let n = 1; running; n++) {
          const id = idOf((n * 104_729) % RECORDS);
          const record = await app.read(RESOURCE, id);
          if (record === undefined) throw new Error(`${id} vanished`);
          try {
            await app.update(RESOURCE, id, record.version, {
              name: id,
              secrets: { token: `${id}-v${n}`, user: "svc" },
            });
            expected.set(id, `${id}-v${n}`);
            counts.writes++;
          } catch (error) {
            // Rewrap wrote the record between our read and our write: an application retries.
            if (!(error instanceof KmsEnvelopeError && error.code === "STORE_CONFLICT"))
              throw error;
            counts.writeConflicts++;
          }
          await sleep(2);
        }
      })();

      try {
        // 4. Rewrap, SIGKILLed once about half the records are done.
        const args = ["--store", storeUrl, "--fields", fieldMap, "--socket", daemon.socketPath];
        const first = startRewrap([...args, "--batch-size", "50"]);
        const firstExit = new Promise<NodeJS.Signals | null>((resolve) =>
          first.on("exit", (_code, signal) => resolve(signal)),
        );
        let remaining = RECORDS;
        await eventually(
          async () => {
            remaining = await repository.countRecordsNotUnder(RESOURCE, { writers: current });
            return remaining <= RECORDS / 2 || first.exitCode !== null;
          },
          "rewrap to get halfway",
          120_000,
        );
        first.kill("SIGKILL");
        assert.equal(await firstExit, "SIGKILL", "the first rewrap was killed, not finished");
        remaining = await repository.countRecordsNotUnder(RESOURCE, { writers: current });
        assert.ok(remaining > 0 && remaining < RECORDS, `killed midway (${remaining} left)`);
        t.diagnostic(`rewrap SIGKILLed with ${remaining} of ${RECORDS} records left`);

        // A script waiting for the rewrap sees work left.
        const pending = await runCli(["rewrap", "--dry-run", "--exit-code", ...args], {}, 60_000);
        assert.equal(pending.code, 1, pending.stderr);

        // Nothing was lost or left undecryptable by the kill.
        const afterKill = await openAll(repository, codec);
        assert.equal(afterKill.size, RECORDS, "every record is still there");

        // 5. Resume: the second run does the rest and says so.
        const resumed = await runCli(["rewrap", ...args, "--batch-size", "200"], {}, 120_000);
        assert.equal(resumed.code, 0, resumed.stderr);
        assert.match(resumed.stdout, /, 0 left\n/);
        assert.match(resumed.stdout, new RegExp(`secrets → field-service ${newKey}`));
        assert.match(resumed.stdout, /^done \(\w+\) in [\d.]+ s, \d+ records\/s$/m);
      } finally {
        running = false;
        await Promise.all([reader, writer]);
      }
      t.diagnostic(`application during rewrap: ${JSON.stringify(counts)}`);
      assert.deepEqual(readerErrors, [], "the reader never saw an error");
      assert.ok(counts.reads > 100 && counts.writes > 10, JSON.stringify(counts));

      // 6. Nothing is left under the old key, as the stamps and a third run both say.
      assert.equal(await repository.countRecordsNotUnder(RESOURCE, { writers: current }), 0);
      const writers = (await repository.writerCounts()).filter(
        (entry) => entry.resource === RESOURCE,
      );
      assert.deepEqual(writers, [
        {
          resource: RESOURCE,
          path: "secrets",
          provider: "field-service",
          keyId: newKey,
          fields: RECORDS,
        },
      ]);
      const dry = await runCli(
        [
          "rewrap",
          "--dry-run",
          "--exit-code",
          "--store",
          storeUrl,
          "--fields",
          fieldMap,
          "--socket",
          daemon.socketPath,
        ],
        {},
        60_000,
      );
      assert.equal(dry.code, 0, dry.stderr);
      assert.match(
        dry.stdout,
        new RegExp(`^${RESOURCE}: 0 records not under the current writer$`, "m"),
      );

      // 7. Retire the old key: every record still decrypts, to what was written last.
      const retired = await runCli(["retire", "--keyring", keyring, "--key-id", oldKey], env);
      assert.equal(retired.code, 0, retired.stderr);
      await eventually(
        async () =>
          daemon
            .logRecords()
            .some(
              (line) =>
                line.msg === "keyring reloaded" &&
                Array.isArray(line.keyVersions) &&
                !line.keyVersions.includes(oldKey),
            ),
        "the daemon to drop the retired key",
      );
      const final = await openAll(repository, codec);
      assert.equal(final.size, RECORDS);
      for (const [id, token] of expected) assert.equal(final.get(id), token, id);
    });
  });
}
