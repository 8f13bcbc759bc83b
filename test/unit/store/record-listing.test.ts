import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { FieldStamp } from "../../../src/fields/field-codec.js";
import { type ListedRecord, listRecords } from "../../../src/store/record-listing.js";
import type { RecordRepository } from "../../../src/store/repository.js";
import { openSqliteRepository } from "../../../src/store/sqlite-repository.js";

const stamp: FieldStamp = {
  path: "content",
  route: "field-service",
  provider: "field-service",
  keyId: "local:k1",
};

describe("listRecords", () => {
  let directory: string;
  let repository: RecordRepository;

  before(async () => {
    directory = await mkdtemp(join(tmpdir(), "kms-envelope-listing-"));
    repository = openSqliteRepository(join(directory, "store.db"));
    // More than two pages, inserted out of order, in two workspaces, beside another resource.
    const ids = Array.from({ length: 1_050 }, (_, index) => index).reverse();
    await repository.insert(
      "messages",
      ids.map((index) => ({
        id: `m-${String(index).padStart(4, "0")}`,
        subjectId: index === 0 ? "ada" : null,
        workspace: index % 3 === 0 ? "ws-a" : "ws-b",
        document: { content: `kmse:v1:local:k1:ciphertext-${index}` },
        stamps: [stamp],
      })),
    );
    await repository.insert("notes", [
      { id: "n-1", subjectId: null, workspace: "ws-a", document: {}, stamps: [] },
    ]);
  });
  after(async () => {
    await repository?.close();
    await rm(directory, { recursive: true, force: true });
  });

  const all = async (resource: string, workspace?: string) => {
    const listed: ListedRecord[] = [];
    for await (const record of listRecords(repository, resource, { workspace }))
      listed.push(record);
    return listed;
  };

  test("every record of the resource, in id order across pages, with stamps and no document", async () => {
    const listed = await all("messages");
    assert.equal(listed.length, 1_050);
    assert.deepEqual(
      listed.map((record) => record.id),
      Array.from({ length: 1_050 }, (_, index) => `m-${String(index).padStart(4, "0")}`),
    );
    const first = listed[0] as ListedRecord;
    assert.deepEqual(Object.keys(first).sort(), [
      "id",
      "stamps",
      "subjectId",
      "updatedAt",
      "version",
      "workspace",
    ]);
    assert.deepEqual(first, {
      ...first,
      subjectId: "ada",
      workspace: "ws-a",
      version: 1,
      stamps: [stamp],
    });
  });

  test("with a workspace, only that workspace's records", async () => {
    const listed = await all("messages", "ws-a");
    assert.equal(listed.length, 350);
    assert.ok(listed.every((record) => record.workspace === "ws-a"));
    assert.deepEqual(await all("messages", "ws-none"), []);
  });

  test("a resource without records lists nothing", async () => {
    assert.deepEqual(await all("no-such-resource"), []);
  });
});
