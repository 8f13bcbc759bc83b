import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, test } from "node:test";
import { status } from "@grpc/grpc-js";
import { call, callError, suiteDaemon } from "../support/daemon-process.js";

interface WireRecord<Value> {
  workspace: string;
  resource: string;
  record_id: string;
  fields: Record<string, Value>;
}
type SealResponse = { records: WireRecord<string>[]; key_id: string };
type OpenResponse = { records: WireRecord<Buffer>[]; stale: boolean; key_id: string };

const token = (record: string) => ({
  workspace: "ws-acme",
  resource: "mcpoauthtokens.obot.obot.ai",
  record_id: record,
  fields: {
    accessToken: Buffer.from(`ya29.${record}`),
    refreshToken: Buffer.from(`1//${record}`),
    empty: Buffer.alloc(0),
  },
});

describe("field service over the daemon's Unix socket", () => {
  const suite = suiteDaemon();
  const seal = (records: WireRecord<Buffer>[]) =>
    call<SealResponse>(suite.clients.field, "Seal", { records, uid: "batch" });
  const open = (records: WireRecord<string>[]) =>
    call<OpenResponse>(suite.clients.field, "Open", { records, uid: "batch" });

  test("a batch seals to kmse:v1 values under the primary key id and opens back in order", async () => {
    const records = [token("r1"), token("r2"), token("r3")];
    const sealed = await seal(records);
    assert.equal(sealed.key_id, suite.daemon.keyId);
    assert.equal(sealed.records.length, 3);
    for (const [index, record] of sealed.records.entries()) {
      assert.equal(record.record_id, records[index]?.record_id);
      for (const value of Object.values(record.fields)) {
        assert.ok(value.startsWith(`kmse:v1:${suite.daemon.keyId}:`), value);
        assert.match(
          value.slice(`kmse:v1:${suite.daemon.keyId}:`.length),
          /^[A-Za-z0-9+/]+={0,2}$/,
        );
      }
    }
    const opened = await open(sealed.records);
    assert.equal(opened.stale, false);
    assert.equal(opened.key_id, suite.daemon.keyId, "Open names the primary key id");
    assert.deepEqual(opened.records, records);
  });

  test("an empty batch is answered with an empty batch", async () => {
    assert.deepEqual((await seal([])).records, []);
    assert.deepEqual((await open([])).records, []);
  });

  test("a value moved to another record, field, resource or workspace fails authentication", async () => {
    const [sealed] = (await seal([token("r1")])).records as [WireRecord<string>];
    const moved: [string, WireRecord<string>][] = [
      ["record", { ...sealed, record_id: "r2" }],
      ["field", { ...sealed, fields: { refreshToken: sealed.fields.accessToken as string } }],
      ["resource", { ...sealed, resource: "users.obot.obot.ai" }],
      ["workspace", { ...sealed, workspace: "ws-other" }],
    ];
    for (const [what, record] of moved) {
      const error = await callError(suite.clients.field, "Open", { records: [record] });
      assert.equal(error.code, status.INVALID_ARGUMENT, what);
      assert.match(
        error.details,
        /^record 0 field "(accessToken|refreshToken)": decryption failed/,
        what,
      );
    }
  });

  test("one bad record fails the whole batch and the error names its position", async () => {
    const sealed = (await seal([token("r1"), token("r2")])).records;
    const broken = sealed.map((record, index) =>
      index === 1
        ? { ...record, fields: { ...record.fields, accessToken: "kmse:v1:local:x:!!" } }
        : record,
    );
    const error = await callError(suite.clients.field, "Open", { records: broken });
    assert.equal(error.code, status.INVALID_ARGUMENT);
    assert.match(error.details, /^record 1 field "accessToken": malformed ciphertext/);
  });

  test("missing names are INVALID_ARGUMENT naming the field of the request", async () => {
    for (const [name, record] of [
      ["workspace", { ...token("r1"), workspace: "" }],
      ["resource", { ...token("r1"), resource: "" }],
      ["record_id", { ...token("r1"), record_id: "" }],
    ] as const) {
      const error = await callError(suite.clients.field, "Seal", { records: [record] });
      assert.equal(error.code, status.INVALID_ARGUMENT);
      assert.equal(error.details, `records[0].${name} is required`);
    }
  });

  test("a value naming an unknown key id is NOT_FOUND", async () => {
    const [sealed] = (await seal([token("r1")])).records as [WireRecord<string>];
    const foreign = (sealed.fields.accessToken as string).replace(
      suite.daemon.keyId,
      "local:ZZZZZZZZZZZZZZZZ",
    );
    const error = await callError(suite.clients.field, "Open", {
      records: [{ ...sealed, fields: { accessToken: foreign } }],
    });
    assert.equal(error.code, status.NOT_FOUND);
  });

  test("binary values of every byte survive a round trip", async () => {
    const binary = {
      workspace: "ws",
      resource: "runstates.obot.obot.ai",
      record_id: "run-1",
      fields: { output: randomBytes(4096), callFrame: Buffer.from([0, 255, 0, 10, 13]) },
    };
    const sealed = await seal([binary]);
    assert.deepEqual((await open(sealed.records)).records, [binary]);
  });
});
