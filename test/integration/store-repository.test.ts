import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import type { FieldStamp, JsonObject } from "../../src/fields/field-codec.js";
import { openRepository } from "../../src/store/open-repository.js";
import type { NewRecord, RecordRepository } from "../../src/store/repository.js";
import { subjectRecords } from "../../src/store/subject-export.js";
import { hasCode } from "../support/error-assertions.js";
import {
  type PostgresBackend,
  type SqliteBackend,
  type StoreBackend,
  storeBackends,
} from "../support/store-backends.js";

/** Whether anything of a store exists yet (the SQLite file; the tables in PostgreSQL). */
async function created(backend: SqliteBackend | PostgresBackend, url: string): Promise<boolean> {
  if (backend.name === "sqlite") return existsSync(backend.file(url));
  const [row] = await backend.query<{ tables: number }>(
    url,
    "SELECT count(*)::int AS tables FROM pg_tables WHERE tablename LIKE 'kmse\\_%'",
  );
  return (row?.tables ?? 0) > 0;
}

/** Records a schema version in a store, as a newer kms-envelope would. */
function setSchemaVersion(backend: StoreBackend, url: string, version: number): Promise<void> {
  const now = backend.name === "sqlite" ? "'now'" : "now()";
  return backend.exec(
    url,
    `INSERT INTO kmse_schema_migrations VALUES (${version}, 'future', ${now})`,
  );
}

const stamp = (path: string, keyId: string, provider = "secretbox"): FieldStamp => ({
  path,
  route: "engine",
  provider,
  keyId,
});

/** A record to insert, with its resource (credentials unless overridden). */
function record(
  id: string,
  overrides: Partial<NewRecord> & { resource?: string } = {},
): [string, NewRecord[]] {
  const { resource = "credentials", ...rest } = overrides;
  return [
    resource,
    [
      {
        id,
        subjectId: "alice",
        workspace: "ws-1",
        document: { name: id, secrets: `ciphertext-of-${id}` },
        stamps: [stamp("secrets", "key-1")],
        ...rest,
      },
    ],
  ];
}

for (const backend of storeBackends()) {
  describe(`record repository (${backend.name})`, () => {
    let repository: RecordRepository;
    let url: string;
    before(async () => {
      url = await backend.newStore();
      repository = await openRepository(url);
    });
    after(async () => {
      await repository?.close();
      await backend.tearDown();
    });

    test("a created record reads back at version 1 with its document and stamps", async () => {
      const document = {
        name: "ünïcödé ✓ 𝄞",
        nested: { list: [1, 2.5, true, null, "x"], empty: {} },
        secrets: "ciphertext",
        big: 12345678901234,
      };
      const [created] = await repository.insert(
        ...record("create-1", { document, stamps: [stamp("secrets", "key-1")] }),
      );
      assert.equal(created?.version, 1, "new records start at version 1");
      const read = await repository.get({ resource: "credentials", id: "create-1" });
      assert.ok(read !== undefined, "the record exists");
      assert.deepEqual(read.document, document);
      assert.deepEqual(read.stamps, [stamp("secrets", "key-1")]);
      assert.equal(read.subjectId, "alice");
      assert.equal(read.workspace, "ws-1");
      assert.equal(read.version, 1);
      assert.ok(!Number.isNaN(Date.parse(read.updatedAt)), "updatedAt is an ISO time");
      assert.equal(await repository.get({ resource: "credentials", id: "missing" }), undefined);
      assert.equal(await repository.get({ resource: "other", id: "create-1" }), undefined);
    });

    test("creating a record that exists is STORE_CONFLICT naming it, and the batch changes nothing", async () => {
      await repository.insert(...record("dup-1"));
      const [, [fresh]] = record("dup-0");
      const [, [again]] = record("dup-1", { document: { name: "other" } });
      await assert.rejects(
        repository.insert("credentials", [fresh as NewRecord, again as NewRecord]),
        (error: Error & { code?: string }) =>
          error.code === "STORE_CONFLICT" &&
          /^record "dup-1" of credentials already exists; update it instead$/.test(error.message),
      );
      const read = await repository.get({ resource: "credentials", id: "dup-1" });
      assert.equal(read?.document.name, "dup-1");
      assert.equal(
        await repository.get({ resource: "credentials", id: "dup-0" }),
        undefined,
        "all or nothing",
      );
    });

    test("a record with two stamps for one field is refused before anything is written", async () => {
      await assert.rejects(
        repository.insert(
          ...record("two-stamps", { stamps: [stamp("secrets", "a"), stamp("secrets", "b")] }),
        ),
        (error: Error & { code?: string }) =>
          error.code === "INVALID_REQUEST" && /two stamps for field "secrets"/.test(error.message),
      );
      assert.equal(await repository.get({ resource: "credentials", id: "two-stamps" }), undefined);
    });

    test("replace writes only records still at the expected version; the rest are conflicts", async () => {
      await repository.insert(...record("replace-1"));
      await repository.insert(...record("replace-2"));
      const outcome = await repository.replace("credentials", [
        {
          id: "replace-1",
          expectedVersion: 1,
          document: { name: "replace-1", secrets: "new", token: "t" },
          stamps: [stamp("secrets", "key-2"), stamp("token", "key-2")],
        },
        { id: "replace-2", expectedVersion: 7, document: { name: "stale" }, stamps: [] },
        { id: "never-existed", expectedVersion: 1, document: {}, stamps: [] },
      ]);
      assert.deepEqual([...outcome.written], [["replace-1", 2]]);
      assert.deepEqual([...outcome.conflicts].sort(), ["never-existed", "replace-2"]);
      const one = await repository.get({ resource: "credentials", id: "replace-1" });
      assert.equal(one?.version, 2);
      assert.deepEqual(one?.document, { name: "replace-1", secrets: "new", token: "t" });
      assert.deepEqual(
        [...(one?.stamps ?? [])].sort((a, b) => a.path.localeCompare(b.path)),
        [stamp("secrets", "key-2"), stamp("token", "key-2")],
      );
      const two = await repository.get({ resource: "credentials", id: "replace-2" });
      assert.equal(two?.version, 1, "a conflicting record is untouched");
      assert.equal(two?.document.name, "replace-2");
      // Stamps follow the document: a field that is gone loses its stamp.
      await repository.replace("credentials", [
        { id: "replace-1", expectedVersion: 2, document: { name: "replace-1" }, stamps: [] },
      ]);
      assert.deepEqual(
        (await repository.get({ resource: "credentials", id: "replace-1" }))?.stamps,
        [],
      );
    });

    test("two writers that read the same version: exactly one wins (no lost update)", async () => {
      await repository.insert(...record("race-1"));
      const other = await openRepository(url);
      try {
        const results = await Promise.all(
          [repository, other].map((writer, index) =>
            writer.replace("credentials", [
              {
                id: "race-1",
                expectedVersion: 1,
                document: { name: `writer-${index}` },
                stamps: [],
              },
            ]),
          ),
        );
        assert.equal(
          results.filter((result) => result.written.has("race-1")).length,
          1,
          "exactly one writer applies",
        );
        assert.equal(results.filter((result) => result.conflicts.includes("race-1")).length, 1);
        const read = await other.get({ resource: "credentials", id: "race-1" });
        assert.equal(read?.version, 2);
      } finally {
        await other.close();
      }
    });

    test("delete honours the expected version and takes the stamps with the record", async () => {
      await repository.insert(...record("delete-1", { resource: "deletions" }));
      const key = { resource: "deletions", id: "delete-1" };
      assert.equal(await repository.delete(key, 5), false, "wrong version: nothing deleted");
      assert.ok(await repository.get(key), "still there");
      assert.equal(await repository.delete(key, 1), true);
      assert.equal(await repository.delete(key), false, "already gone");
      const counts = await repository.writerCounts();
      assert.equal(
        counts.filter((count) => count.resource === "deletions").length,
        0,
        "no stamp outlives its record",
      );
    });

    test("lookup tokens are written with the record, replaced with it, and deleted with it", async () => {
      const email = (token: string) => ({ path: "email", token });
      await repository.insert("people", [
        { ...record("p1")[1][0], id: "p1", tokens: [email("kmsl:v1:k:ada")] } as NewRecord,
        { ...record("p2")[1][0], id: "p2", tokens: [email("kmsl:v1:k:ada")] } as NewRecord,
        { ...record("p3")[1][0], id: "p3", tokens: [email("kmsl:v1:k:bob")] } as NewRecord,
      ]);
      const all = { afterId: "", limit: 100 };
      const find = (...tokens: string[]) =>
        repository.recordsWithToken("people", "email", tokens, all);
      assert.deepEqual(await find("kmsl:v1:k:ada"), ["p1", "p2"]);
      // Paged in id order, duplicates counted once even when several tokens match.
      const page = (afterId: string) =>
        repository.recordsWithToken("people", "email", ["kmsl:v1:k:ada", "kmsl:v1:k:bob"], {
          afterId,
          limit: 2,
        });
      assert.deepEqual(await page(""), ["p1", "p2"]);
      assert.deepEqual(await page("p2"), ["p3"]);
      assert.deepEqual(await page("p3"), []);
      assert.deepEqual(await find("kmsl:v1:old:ada", "kmsl:v1:k:bob"), ["p3"], "any of the tokens");
      assert.deepEqual(
        await repository.recordsWithToken("people", "name", ["kmsl:v1:k:ada"], all),
        [],
      );
      assert.deepEqual(
        await repository.recordsWithToken("others", "email", ["kmsl:v1:k:ada"], all),
        [],
      );
      const outcome = await repository.replace("people", [
        {
          id: "p1",
          expectedVersion: 1,
          document: {},
          stamps: [],
          tokens: [email("kmsl:v1:k:eve")],
        },
        { id: "p2", expectedVersion: 1, document: {}, stamps: [] },
        // A lost race changes nothing, tokens included.
        { id: "p3", expectedVersion: 7, document: {}, stamps: [], tokens: [email("kmsl:v1:k:x")] },
      ]);
      assert.deepEqual(outcome.conflicts, ["p3"]);
      assert.deepEqual(await find("kmsl:v1:k:ada"), [], "the old value no longer finds them");
      assert.deepEqual(await find("kmsl:v1:k:eve"), ["p1"]);
      assert.deepEqual(await find("kmsl:v1:k:bob"), ["p3"]);
      assert.equal(await repository.delete({ resource: "people", id: "p1" }), true);
      assert.deepEqual(await find("kmsl:v1:k:eve"), [], "no token outlives its record");
      await assert.rejects(
        repository.insert("people", [
          {
            ...record("p4")[1][0],
            id: "p4",
            tokens: [email("kmsl:v1:k:a"), email("kmsl:v1:k:b")],
          } as NewRecord,
        ]),
        (error: Error & { code?: string }) =>
          error.code === "INVALID_REQUEST" &&
          /two lookup tokens for field "email"/.test(error.message),
      );
      assert.equal(await repository.get({ resource: "people", id: "p4" }), undefined);
    });

    test("a store of schema version 1 gains the token table when opened read-write", async () => {
      const fresh = await backend.newStore();
      const first = await openRepository(fresh);
      await first.insert(...record("old"));
      await first.close();
      await backend.exec(
        fresh,
        "DROP TABLE IF EXISTS kmse_rewrap_leases; DROP TABLE IF EXISTS kmse_rewrap_runs; DROP TABLE kmse_lookup_tokens; DELETE FROM kmse_schema_migrations WHERE version >= 2",
      );
      await assert.rejects(openRepository(fresh, { readOnly: true }), /older than this/);
      const migrated = await openRepository(fresh);
      try {
        assert.equal((await migrated.get({ resource: "credentials", id: "old" }))?.version, 1);
        await migrated.replace("credentials", [
          {
            id: "old",
            expectedVersion: 1,
            document: {},
            stamps: [],
            tokens: [{ path: "name", token: "kmsl:v1:k:t" }],
          },
        ]);
        assert.deepEqual(
          await migrated.recordsWithToken("credentials", "name", ["kmsl:v1:k:t"], {
            afterId: "",
            limit: 10,
          }),
          ["old"],
        );
      } finally {
        await migrated.close();
      }
    });

    test("fields not under the current writer are found by query, page by page", async () => {
      const resource = "rotation";
      for (let index = 0; index < 25; index++) {
        const id = `r-${String(index).padStart(3, "0")}`;
        const old = index % 3 === 0;
        await repository.insert(
          ...record(id, {
            resource,
            document: { a: "x", b: "y" },
            stamps: [
              stamp("a", old ? "key-1" : "key-2"),
              stamp("b", index % 5 === 0 ? "key-1" : "key-2"),
            ],
          }),
        );
      }
      const current = [
        { path: "a", provider: "secretbox", keyId: "key-2" },
        { path: "b", provider: "secretbox", keyId: "key-2" },
      ];
      const expected = Array.from({ length: 25 }, (_, index) => index)
        .filter((index) => index % 3 === 0 || index % 5 === 0)
        .map((index) => `r-${String(index).padStart(3, "0")}`);
      assert.equal(
        await repository.countRecordsNotUnder(resource, { writers: current }),
        expected.length,
      );
      const found: string[] = [];
      let cursor = "";
      for (;;) {
        const page = await repository.recordsNotUnder(resource, { writers: current }, cursor, 4);
        if (page.length === 0) break;
        assert.ok(page.length <= 4, "a page holds at most the limit");
        found.push(...page);
        cursor = page[page.length - 1] as string;
      }
      assert.deepEqual(found, expected, "each record once, in id order");
      // Only the listed paths count; a provider change counts like a key change.
      assert.equal(
        await repository.countRecordsNotUnder(resource, {
          writers: [current[0] as (typeof current)[0]],
        }),
        9,
      );
      assert.equal(
        await repository.countRecordsNotUnder(resource, {
          writers: [{ path: "a", provider: "aesgcm", keyId: "key-2" }],
        }),
        25,
      );
      assert.equal(await repository.countRecordsNotUnder(resource, { writers: [] }), 0);
      const counts = (await repository.writerCounts()).filter((c) => c.resource === resource);
      assert.deepEqual(counts, [
        { resource, path: "a", provider: "secretbox", keyId: "key-1", fields: 9 },
        { resource, path: "a", provider: "secretbox", keyId: "key-2", fields: 16 },
        { resource, path: "b", provider: "secretbox", keyId: "key-1", fields: 5 },
        { resource, path: "b", provider: "secretbox", keyId: "key-2", fields: 20 },
      ]);
      assert.equal(await repository.countRecords(resource), 25);
      const ids = await repository.recordIds(resource, "r-020", 100);
      assert.deepEqual(ids, ["r-021", "r-022", "r-023", "r-024"]);
      assert.ok((await repository.resources()).includes(resource), "resource listed");
    });

    test("values at encrypted paths without a stamp are counted and listed as plaintext, at any depth", async () => {
      const resource = "adopt";
      const documents: Record<string, JsonObject> = {
        // Plain at both paths.
        "a-0": { email: "x@y.z", profile: { phone: "123" } },
        // email sealed (stamped), phone plain.
        "a-1": { email: "sealed", profile: { phone: 5 } },
        // Nothing there, null, or not under an object: no value, so nothing to encrypt.
        "a-2": { email: null, profile: { phone: null } },
        "a-3": { profile: ["phone"] },
        "a-4": { profile: "phone" },
        // A value that is an object or false is still a value.
        "a-5": { email: { nested: true }, profile: { phone: false } },
        // Sealed at both paths.
        "a-6": { email: "sealed", profile: { phone: "sealed" } },
      };
      for (const [id, document] of Object.entries(documents)) {
        const stamps =
          id === "a-6"
            ? [stamp("email", "key-1"), stamp("profile.phone", "key-1")]
            : id === "a-1"
              ? [stamp("email", "key-1")]
              : [];
        await repository.insert(...record(id, { resource, document, stamps }));
      }
      assert.equal(await repository.countPlaintext(resource, "email"), 2);
      assert.equal(await repository.countPlaintext(resource, "profile.phone"), 3);
      assert.equal(await repository.countPlaintext(resource, "missing"), 0);
      const writers = [
        { path: "email", provider: "secretbox", keyId: "key-1" },
        { path: "profile.phone", provider: "secretbox", keyId: "key-1" },
      ];
      const plaintext = ["email", "profile.phone"];
      assert.equal(await repository.countRecordsNotUnder(resource, { writers }), 0);
      assert.equal(await repository.countRecordsNotUnder(resource, { writers, plaintext }), 3);
      const pages: string[][] = [];
      let cursor = "";
      for (;;) {
        const page = await repository.recordsNotUnder(resource, { writers, plaintext }, cursor, 2);
        if (page.length === 0) break;
        pages.push(page);
        cursor = page[page.length - 1] as string;
      }
      assert.deepEqual(pages, [["a-0", "a-1"], ["a-5"]]);
      // A stale stamp and a plain value are one union, each record listed once.
      const newer = writers.map((writer) => ({ ...writer, keyId: "key-2" }));
      assert.deepEqual(
        await repository.recordsNotUnder(resource, { writers: newer, plaintext }, "", 10),
        ["a-0", "a-1", "a-5", "a-6"],
      );
      assert.equal(
        await repository.countRecordsNotUnder(resource, { writers: newer, plaintext }),
        4,
      );
    });

    test("scrub says what it removed and, where it cannot, what to do", async () => {
      const outcome = await repository.scrub();
      if (backend.name === "sqlite") assert.deepEqual(outcome, { complete: true });
      else {
        assert.equal(outcome.complete, false);
        assert.match(outcome.advice ?? "", /VACUUM FULL kmse_records/);
      }
    });

    test("lookup tokens under another version, or missing, are found by query; tokens are counted by the version they name", async () => {
      const resource = "search";
      // Key ids hold ':' themselves, so the version is what lies between kmsl:v1: and the tag.
      const token = (keyId: string, index: number) =>
        `kmsl:v1:${keyId}:${String(index).padStart(22, "A")}`;
      for (let index = 0; index < 12; index++) {
        const id = `s-${String(index).padStart(3, "0")}`;
        const tokens =
          index % 3 === 0
            ? [{ path: "email", token: token("local:old", index) }]
            : index % 3 === 1
              ? [{ path: "email", token: token("local:new", index) }]
              : [];
        await repository.insert(
          ...record(id, {
            resource,
            document: { email: "x", name: "y" },
            // The last record holds no email, so no token is missing there.
            stamps: [
              ...(index === 11 ? [] : [stamp("email", "local:new", "field-service")]),
              stamp("name", "local:new", "field-service"),
            ],
            tokens: index === 11 ? [] : tokens,
          }),
        );
      }
      const lookups = [{ path: "email", keyId: "local:new" }];
      const expected = ["s-000", "s-002", "s-003", "s-005", "s-006", "s-008", "s-009"];
      assert.equal(
        await repository.countRecordsNotUnder(resource, { writers: [], tokens: lookups }),
        expected.length,
      );
      const found: string[] = [];
      let cursor = "";
      for (;;) {
        const page = await repository.recordsNotUnder(
          resource,
          { writers: [], tokens: lookups },
          cursor,
          3,
        );
        if (page.length === 0) break;
        found.push(...page);
        cursor = page[page.length - 1] as string;
      }
      assert.deepEqual(found, expected, "each record once, in id order");
      assert.equal(await repository.countMissingTokens(resource, "email"), 3);
      assert.equal(await repository.countMissingTokens(resource, "name"), 12, "no lookup there");
      // A stamp under another writer lists a record as well: the union is counted once.
      assert.equal(
        await repository.countRecordsNotUnder(resource, {
          writers: [{ path: "name", provider: "field-service", keyId: "local:newer" }],
          tokens: lookups,
        }),
        12,
      );
      assert.deepEqual(
        (await repository.tokenCounts()).filter((count) => count.resource === resource),
        [
          { resource, path: "email", keyId: "local:new", tokens: 4 },
          { resource, path: "email", keyId: "local:old", tokens: 4 },
        ],
      );
    });

    test("a subject's records come in (resource, id) order across pages; others' never", async () => {
      for (const [resource, id, subjectId] of [
        ["users", "u-2", "bob"],
        ["credentials", "bob-c", "bob"],
        ["users", "u-1", "bob"],
        ["audit", "a-9", "bob"],
        ["users", "u-3", "carol"],
        ["audit", "a-1", null],
      ] as const) {
        await repository.insert(...record(id, { resource, subjectId }));
      }
      const seen: string[] = [];
      let after: { resource: string; id: string } | undefined;
      for (;;) {
        const page = await repository.subjectRecords("bob", after, 2);
        seen.push(...page.records.map((entry) => `${entry.resource}/${entry.id}`));
        assert.ok(
          page.records.every((entry) => entry.subjectId === "bob"),
          "only bob's records",
        );
        if (page.next === undefined) break;
        after = page.next;
      }
      assert.deepEqual(seen, ["audit/a-9", "credentials/bob-c", "users/u-1", "users/u-2"]);
    });

    test("a subject's export is complete when a whole page is deleted while it is read", async () => {
      const resource = "deletions";
      const ids = Array.from({ length: 501 }, (_, index) => `d-${String(index).padStart(3, "0")}`);
      await repository.insert(
        resource,
        ids.map((id) => ({ ...(record(id)[1][0] as NewRecord), subjectId: "dana" })),
      );
      // The application deletes the first page's records between the key read and the fetch.
      let raced = false;
      const getMany = repository.getMany.bind(repository);
      repository.getMany = async (name, wanted) => {
        if (!raced) {
          raced = true;
          for (const id of wanted) await repository.delete({ resource: name, id });
        }
        return getMany(name, wanted);
      };
      const exported: string[] = [];
      try {
        for await (const entry of subjectRecords(repository, "dana")) exported.push(entry.id);
      } finally {
        repository.getMany = getMany;
      }
      assert.ok(raced, "the fetch was raced");
      assert.deepEqual(exported, ["d-500"]);
    });

    test("reopening migrates nothing twice; a newer schema is refused with what to do", async () => {
      const fresh = await backend.newStore();
      const first = await openRepository(fresh);
      await first.insert(...record("kept"));
      await first.close();
      const second = await openRepository(fresh);
      assert.equal((await second.get({ resource: "credentials", id: "kept" }))?.version, 1);
      await second.close();
      await setSchemaVersion(backend, fresh, 99);
      await assert.rejects(
        openRepository(fresh),
        (error: Error & { code?: string }) =>
          error.code === "STORE_UNAVAILABLE" &&
          /schema version 99, newer than this kms-envelope knows \(3\); upgrade kms-envelope/.test(
            error.message,
          ),
      );
    });

    test("a read-only open never creates a store: one not created yet is STORE_MISSING naming it", async () => {
      const fresh = await backend.newStore();
      await assert.rejects(
        openRepository(fresh, { readOnly: true }),
        hasCode(
          "STORE_MISSING",
          backend.name === "sqlite"
            ? /^the SQLite store \/.*\/store-\d+\.db does not exist, and a command that only reads or rewrites records never creates one; check --store or --data-dir/
            : /^the store postgres:\/\/127\.0\.0\.1:\d+\/kmse_\w+ has no kms-envelope tables: nothing was ever stored there; check --store or --data-dir$/,
        ),
      );
      assert.equal(await created(backend, fresh), false, "nothing was created");
    });

    test("a read-only open reads an existing store, refuses writes, and refuses a newer schema", async () => {
      const fresh = await backend.newStore();
      const writer = await openRepository(fresh);
      await writer.insert(...record("read-only-1"));
      await writer.close();
      const reader = await openRepository(fresh, { readOnly: true });
      try {
        assert.equal(
          (await reader.get({ resource: "credentials", id: "read-only-1" }))?.version,
          1,
        );
        await assert.rejects(reader.insert(...record("read-only-2")), /read-?only/);
        assert.equal(await reader.get({ resource: "credentials", id: "read-only-2" }), undefined);
      } finally {
        await reader.close();
      }
      await setSchemaVersion(backend, fresh, 99);
      await assert.rejects(
        openRepository(fresh, { readOnly: true }),
        hasCode("STORE_UNAVAILABLE", /schema version 99, newer than this kms-envelope knows \(3\)/),
      );
    });

    test("stores opened at the same moment migrate once", async () => {
      const fresh = await backend.newStore();
      const repositories = await Promise.all([1, 2, 3].map(() => openRepository(fresh)));
      await repositories[0]?.insert(...record("concurrent-open"));
      for (const entry of repositories) await entry.close();
    });
  });
}
