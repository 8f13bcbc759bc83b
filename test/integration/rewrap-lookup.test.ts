import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { FieldCodec } from "../../src/fields/field-codec.js";
import type { FieldLayer } from "../../src/fields/field-layer.js";
import { openFieldLayer } from "../../src/fields/open-field-layer.js";
import { EncryptedStore } from "../../src/store/encrypted-store.js";
import { openRepository } from "../../src/store/open-repository.js";
import type { RecordRepository } from "../../src/store/repository.js";
import { rewrap } from "../../src/store/rewrap.js";
import {
  DaemonProcess,
  newMasterKey,
  runCli,
  suiteDaemon,
  temporaryDirectory,
} from "../support/daemon-process.js";
import { storeBackends } from "../support/store-backends.js";

const FIELD_MAP = `apiVersion: kms-envelope/v1
kind: FieldMap
resources:
  - resource: people
    route: field-service
    fields:
      email: { type: string, lookup: [trim, lowercase] }
      name: string
`;

// The same resource before `lookup` was declared on email.
const FIELD_MAP_WITHOUT_LOOKUP = FIELD_MAP.replace(
  "{ type: string, lookup: [trim, lowercase] }",
  "string",
);

const RECORDS = 7;

const people = (prefix: string) =>
  Array.from({ length: RECORDS }, (_, index) => ({
    id: `${prefix}-${index}`,
    workspace: "ws-1",
    document: { email: `${prefix}${index}@Example.com`, name: `Person ${index}` },
  }));

describe("rewrap moves lookup tokens to the primary version, through the daemon", () => {
  const masterKey = newMasterKey();
  const suite = suiteDaemon({ env: { ENCRYPTION_MASTER_KEY: masterKey } });
  let directory: Awaited<ReturnType<typeof temporaryDirectory>>;
  let fieldMapPath: string;
  let withoutLookupPath: string;

  before(async () => {
    directory = await temporaryDirectory();
    fieldMapPath = join(directory.path, "field-map.yaml");
    await writeFile(fieldMapPath, FIELD_MAP);
    withoutLookupPath = join(directory.path, "field-map-without-lookup.yaml");
    await writeFile(withoutLookupPath, FIELD_MAP_WITHOUT_LOOKUP);
  });
  after(() => directory?.remove());

  for (const backend of storeBackends()) {
    describe(backend.name, () => {
      after(() => backend.tearDown());

      test("after a rotation, rewrap moves tokens (also of records whose fields are current) and the dry run counts them before and 0 after", async () => {
        const repository: RecordRepository = await openRepository(await backend.newStore());
        const oldLayer = await openFieldLayer({
          fieldMapPath,
          daemonSocket: suite.daemon.socketPath,
        });
        const rotated = await DaemonProcess.start({
          socketPath: join(directory.path, `rotated-${backend.name}.sock`),
          env: { ENCRYPTION_MASTER_KEY: newMasterKey(), ENCRYPTION_MASTER_KEY_PREVIOUS: masterKey },
          args: [],
        });
        let layer: FieldLayer | undefined;
        try {
          await new EncryptedStore({ repository, codec: oldLayer }).createMany(
            "people",
            people("p"),
          );
          layer = await openFieldLayer({ fieldMapPath, daemonSocket: rotated.socketPath });
          const store = new EncryptedStore({ repository, codec: layer });
          // One record rewritten by the new version, then given back its old-version token: its
          // field is current and only its token needs moving.
          const current = await store.read("people", "p-0");
          assert.ok(current);
          await store.update("people", "p-0", current.version, current.document);
          const stored = await repository.get({ resource: "people", id: "p-0" });
          assert.ok(stored);
          const [, oldToken] = await layer.tokensFor("people", "email", "ws-1", "p0@example.com");
          assert.ok(oldToken);
          await repository.replace("people", [
            {
              id: "p-0",
              expectedVersion: stored.version,
              document: stored.document,
              stamps: stored.stamps,
              tokens: [{ path: "email", token: oldToken }],
            },
          ]);

          const dry = await rewrap({ repository, codec: layer, dryRun: true });
          const [summary] = dry.resources;
          assert.deepEqual(summary?.lookups, [{ path: "email", keyId: rotated.keyId }]);
          assert.deepEqual(summary?.staleTokens, [
            { path: "email", keyId: suite.daemon.keyId, tokens: RECORDS },
          ]);
          assert.equal(summary?.staleFields[0]?.fields, RECORDS - 1);
          assert.equal(summary?.recordsNeeding, RECORDS, "p-0 is counted for its token alone");

          const run = await rewrap({ repository, codec: layer, batchSize: 3 });
          assert.equal(run.resources[0]?.recordsRewrapped, RECORDS);
          assert.equal(run.resources[0]?.remaining, 0);
          assert.deepEqual(await repository.tokenCounts(), [
            { resource: "people", path: "email", keyId: rotated.keyId, tokens: RECORDS },
          ]);
          const after = (await rewrap({ repository, codec: layer, dryRun: true })).resources[0];
          assert.deepEqual(after?.staleTokens, []);
          assert.equal(after?.recordsNeeding, 0);
          const found = await store.find("people", {
            field: "email",
            value: "P0@EXAMPLE.COM",
            workspace: "ws-1",
          });
          assert.deepEqual(
            found.map((record) => [record.id, record.stale]),
            [["p-0", false]],
          );
        } finally {
          await layer?.close();
          await oldLayer.close();
          await rotated.stop();
          await repository.close();
        }
      });

      test("a store populated before lookup was declared: rewrap computes the missing tokens, resumably, without overwriting a concurrent write, and find then sees every record", async () => {
        const url = await backend.newStore();
        const repository = await openRepository(url);
        const before = await openFieldLayer({
          fieldMapPath: withoutLookupPath,
          daemonSocket: suite.daemon.socketPath,
        });
        try {
          await new EncryptedStore({ repository, codec: before }).createMany("people", people("b"));
        } finally {
          await before.close();
        }
        const layer = await openFieldLayer({ fieldMapPath, daemonSocket: suite.daemon.socketPath });
        try {
          const store = new EncryptedStore({ repository, codec: layer });
          const find = async (value: string) =>
            (await store.find("people", { field: "email", value, workspace: "ws-1" })).map(
              (record) => [record.id, record.document.email],
            );
          assert.deepEqual(await find("b0@example.com"), [], "no token yet");

          const dry = (await rewrap({ repository, codec: layer, dryRun: true })).resources[0];
          assert.deepEqual(dry?.missingTokens, [{ path: "email", records: RECORDS }]);
          assert.deepEqual(dry?.staleFields, [], "the fields themselves are current");
          assert.equal(dry?.recordsNeeding, RECORDS);
          const cli = await runCli(
            [
              "rewrap",
              "--dry-run",
              "--store",
              url,
              "--fields",
              fieldMapPath,
              "--socket",
              suite.daemon.socketPath,
            ],
            {},
            60_000,
          );
          assert.equal(cli.code, 0, cli.stderr);
          assert.match(
            cli.stdout,
            new RegExp(
              `^ {2}email lookup tokens → ${suite.daemon.keyId} \\(${RECORDS} missing\\)$`,
              "m",
            ),
          );

          // The application rewrites b-1 while the first batch is being sealed, and the operator
          // stops the run after that batch.
          let raced = false;
          const racing: FieldCodec = {
            seal: async (resource, records) => {
              if (!raced) {
                raced = true;
                const current = await store.read("people", "b-1");
                assert.ok(current);
                await store.update("people", "b-1", current.version, {
                  email: "Changed@Example.com",
                  name: "Person 1",
                });
              }
              return layer.seal(resource, records);
            },
            open: (resource, records) => layer.open(resource, records),
            checkResource: (resource) => layer.checkResource(resource),
            currentWriter: (resource, path) => layer.currentWriter(resource, path),
            tokensFor: (resource, path, workspace, value) =>
              layer.tokensFor(resource, path, workspace, value),
            encryptedPaths: (resource) => layer.encryptedPaths(resource),
            lookupPaths: (resource) => layer.lookupPaths(resource),
            close: () => layer.close(),
          };
          const controller = new AbortController();
          const stopped = await rewrap({
            repository,
            codec: racing,
            batchSize: 2,
            signal: controller.signal,
            progress: { begin() {}, advance: () => controller.abort(), end() {} },
          });
          assert.equal(stopped.interrupted, true);
          assert.equal(stopped.resources[0]?.recordsRewrapped, 2);
          assert.equal(stopped.resources[0]?.conflictsRetried, 1);
          assert.deepEqual(await find("CHANGED@example.com"), [["b-1", "Changed@Example.com"]]);
          assert.deepEqual(await find("b1@example.com"), [], "the application's write stands");
          const halfway = (await rewrap({ repository, codec: layer, dryRun: true })).resources[0];
          assert.deepEqual(halfway?.missingTokens, [{ path: "email", records: RECORDS - 2 }]);

          const rerun = await rewrap({ repository, codec: layer, batchSize: 2 });
          assert.equal(rerun.interrupted, false);
          assert.equal(rerun.resources[0]?.recordsRewrapped, RECORDS - 2);
          assert.equal(rerun.resources[0]?.remaining, 0);
          const done = (await rewrap({ repository, codec: layer, dryRun: true })).resources[0];
          assert.deepEqual(done?.missingTokens, []);
          assert.equal(done?.recordsNeeding, 0);
          for (const index of [0, 2, 3, 4, 5, 6])
            assert.deepEqual(await find(`B${index}@example.com `), [
              [`b-${index}`, `b${index}@Example.com`],
            ]);
          const again = await rewrap({ repository, codec: layer });
          assert.equal(
            again.resources[0]?.recordsRewrapped,
            0,
            "a finished backfill finds nothing",
          );
        } finally {
          await layer.close();
          await repository.close();
        }
      });
    });
  }
});
