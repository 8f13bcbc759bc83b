import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { FieldLayer } from "../../src/fields/field-layer.js";
import { openFieldLayer } from "../../src/fields/open-field-layer.js";
import { EncryptedStore } from "../../src/store/encrypted-store.js";
import { openRepository } from "../../src/store/open-repository.js";
import type { RecordRepository } from "../../src/store/repository.js";
import { rewrap } from "../../src/store/rewrap.js";
import {
  DaemonProcess,
  newMasterKey,
  suiteDaemon,
  temporaryDirectory,
} from "../support/daemon-process.js";
import { type PostgresServer, startPostgres } from "../support/postgres-server.js";

const FIELD_MAP = `apiVersion: kms-envelope/v1
kind: FieldMap
resources:
  - resource: people
    route: field-service
    fields:
      email: { type: string, lookup: [trim, lowercase] }
      name: string
`;

const RECORDS = 7;

const people = (prefix: string) =>
  Array.from({ length: RECORDS }, (_, index) => ({
    id: `${prefix}-${index}`,
    workspace: "ws-1",
    document: { email: `${prefix}${index}@Example.com`, name: `Person ${index}` },
  }));

interface Backend {
  name: string;
  /** A fresh, empty store's URL. */
  url(): Promise<string>;
  tearDown(): Promise<void>;
}

describe("rewrap moves lookup tokens to the primary version, through the daemon", () => {
  const masterKey = newMasterKey();
  const suite = suiteDaemon({ env: { ENCRYPTION_MASTER_KEY: masterKey } });
  let directory: Awaited<ReturnType<typeof temporaryDirectory>>;
  let fieldMapPath: string;

  before(async () => {
    directory = await temporaryDirectory();
    fieldMapPath = join(directory.path, "field-map.yaml");
    await writeFile(fieldMapPath, FIELD_MAP);
  });
  after(() => directory?.remove());

  let server: PostgresServer | undefined;
  let stores = 0;
  const backends: Backend[] = [
    {
      name: "sqlite",
      async url() {
        stores++;
        return `sqlite://${join(directory.path, `store-${stores}.db`)}`;
      },
      async tearDown() {},
    },
    {
      name: "postgres",
      async url() {
        server ??= await startPostgres();
        return server.tcpUrl(await server.createDatabase());
      },
      async tearDown() {
        await server?.stop();
      },
    },
  ];

  for (const backend of backends) {
    describe(backend.name, () => {
      after(() => backend.tearDown());

      test("after a rotation, rewrap moves tokens (also of records whose fields are current) and the dry run counts them before and 0 after", async () => {
        const repository: RecordRepository = await openRepository(await backend.url());
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
    });
  }
});
