import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { after, beforeEach, describe, test } from "node:test";
import { numberedLines } from "../../../src/cli/json-lines.js";
import { type PutOptions, putRecords } from "../../../src/cli/store-put.js";
import { EncryptedStore } from "../../../src/store/encrypted-store.js";
import { PlaintextGuard } from "../../../src/store/plaintext-guard.js";
import type { RecordRepository } from "../../../src/store/repository.js";
import { openSqliteRepository } from "../../../src/store/sqlite-repository.js";
import { hasCode } from "../../support/error-assertions.js";
import { SecretboxCodec } from "../store/support/secretbox-codec.js";

const RESOURCE = "messages";

const message = (id: string, extra: Record<string, string> = {}) =>
  JSON.stringify({ id, content: `words of ${id}`, ...extra });
const messages = (from: number, to: number) =>
  Array.from({ length: to - from + 1 }, (_, index) => message(`m-${from + index}`));

describe("putRecords (store put): batches, and where a failure stops the input", () => {
  let directory: string;
  let repository: RecordRepository;
  let codec: SecretboxCodec;

  beforeEach(async () => {
    await repository?.close();
    if (directory) await rm(directory, { recursive: true, force: true });
    directory = await mkdtemp(join(tmpdir(), "kms-envelope-put-"));
    repository = openSqliteRepository(join(directory, "store.db"));
    codec = await SecretboxCodec.create({ [RESOURCE]: ["content"] });
  });
  after(async () => {
    await repository?.close();
    await rm(directory, { recursive: true, force: true });
  });

  const put = (lines: string[], options: Partial<PutOptions> = {}) =>
    putRecords(
      numberedLines(Readable.from([`${lines.join("\n")}\n`])),
      {
        store: new EncryptedStore({ repository, codec }),
        repository,
        encryptedPaths: codec.encryptedPaths(RESOURCE),
      },
      {
        resource: RESOURCE,
        placement: { idField: "id", subjectField: "owner", workspaceRequired: false },
        replace: false,
        guard: new PlaintextGuard({ mode: "refuse" }, () => undefined),
        ...options,
      },
    );
  const ids = async () => {
    const listed = await repository.recordIds(RESOURCE, "", 1_000);
    return new Set(listed);
  };

  test("250 lines go in batches of 100 (one seal each), encrypted at rest", async () => {
    assert.deepEqual(await put(messages(1, 250)), { created: 250, replaced: 0 });
    assert.equal(codec.calls.seal, 3);
    const stored = await repository.get({ resource: RESOURCE, id: "m-7" });
    assert.match(String(stored?.document.content), /^tsb:/);
    assert.equal(stored?.version, 1);
  });

  test("a bad line in the second batch stops there: every line before it is stored, nothing from it on", async () => {
    const lines = messages(1, 200);
    lines[149] = '{"id":"m-150",';
    await assert.rejects(
      put(lines),
      hasCode(
        "INVALID_REQUEST",
        "line 150 is not JSON; the records of the lines before line 150 are stored (149), nothing from line 150 on: continue with tail -n +150",
      ),
    );
    const stored = await ids();
    assert.equal(stored.size, 149);
    assert.ok(stored.has("m-149") && !stored.has("m-151"));
  });

  test("a bad first line stores nothing and says so", async () => {
    await assert.rejects(
      put(['{"content":"no id"}', message("m-2")]),
      hasCode(
        "INVALID_REQUEST",
        "line 1 has no id (--id-field): every record needs a string id; nothing was stored",
      ),
    );
    assert.equal((await ids()).size, 0);
  });

  test("an id that exists stops the input at its line unless --replace", async () => {
    await put([message("a"), message("b")]);
    await assert.rejects(
      put([message("c"), message("a"), message("d")]),
      hasCode(
        "STORE_CONFLICT",
        'line 2: messages "a" exists already; pass --replace to replace it; the records of the lines before line 2 are stored (1), nothing from line 2 on: continue with tail -n +2',
      ),
    );
    assert.deepEqual([...(await ids())].sort(), ["a", "b", "c"]);
  });

  test("--replace writes the new document over an existing record at its next version", async () => {
    await put([message("a"), message("b")]);
    const counts = await put([message("b", { content: "new words" }), message("e")], {
      replace: true,
    });
    assert.deepEqual(counts, { created: 1, replaced: 1 });
    const read = await new EncryptedStore({ repository, codec }).read(RESOURCE, "b");
    assert.equal(read?.document.content, "new words");
    assert.equal(read?.version, 2);
  });

  test("the same id twice in one input: the later line replaces the earlier with --replace, stops without it", async () => {
    assert.deepEqual(
      await put([message("x", { content: "first" }), message("x", { content: "second" })], {
        replace: true,
      }),
      { created: 1, replaced: 1 },
    );
    const read = await new EncryptedStore({ repository, codec }).read(RESOURCE, "x");
    assert.equal(read?.document.content, "second");
    await assert.rejects(
      put([message("y"), message("y")]),
      hasCode("STORE_CONFLICT", /^line 2: messages "y" exists already; pass --replace/),
    );
  });

  test("--replace keeps a record's subject and workspace: a line that names others is refused", async () => {
    await put([message("owned", { owner: "ada" })]);
    await assert.rejects(
      put([message("owned", { owner: "eve" })], { replace: true }),
      hasCode(
        "STORE_CONFLICT",
        'line 1: messages "owned" exists with another subject, which --replace cannot change; store it under another id; nothing was stored',
      ),
    );
    const stored = await repository.get({ resource: RESOURCE, id: "owned" });
    assert.equal(stored?.subjectId, "ada");
    assert.equal(stored?.version, 1);
  });

  test("the guard refuses a credential in a plaintext field at its line, naming the field, never the value", async () => {
    const key = `AKIA${"IOSFODNN7EXAMPLE"}`;
    await assert.rejects(
      put([message("ok"), message("leaky", { title: `key ${key}` })]),
      (error: Error) => {
        hasCode(
          "PLAINTEXT_CREDENTIAL",
          /^refused to store messages "leaky": plaintext field title looks like a credential .*; the records of the lines before line 2 are stored \(1\), nothing from line 2 on: continue with tail -n \+2$/,
        )(error);
        assert.ok(!error.message.includes(key));
        return true;
      },
    );
    assert.deepEqual([...(await ids())], ["ok"]);
  });
});
