import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, test } from "node:test";
import type * as grpc from "@grpc/grpc-js";
import { services } from "../../src/wire/protos.js";
import { call, newMasterKey, suiteDaemon } from "../support/daemon-process.js";

// One daemon with two field workers, which cuts a large call across them, beside one with a
// single worker, which cannot: same master key, so their answers can be compared byte for byte.

interface WireRecord<Value> {
  workspace: string;
  resource: string;
  record_id: string;
  fields: Record<string, Value>;
}

const RECORDS = 200;
const FIELDS = 5;
const env = { ENCRYPTION_MASTER_KEY: newMasterKey() };
const limits = ["--max-fields-per-request", String(RECORDS * FIELDS)];
const split = suiteDaemon({ env, args: ["--field-workers", "2", ...limits] });
const single = suiteDaemon({ env, args: ["--field-workers", "1", ...limits] });

function records(count: number, fields = FIELDS): WireRecord<Buffer>[] {
  return Array.from({ length: count }, (_, index) => ({
    workspace: `ws-${index % 3}`,
    resource: "credentials",
    record_id: `r${index}`,
    fields: Object.fromEntries(
      Array.from({ length: fields }, (_, field) => [`f${field}`, randomBytes(100)]),
    ),
  }));
}

/** The raw answer (or the error) of a call, so answers can be compared as bytes. */
function raw(
  client: grpc.Client,
  method: "Seal" | "Open",
  request: object,
): Promise<{ bytes?: Buffer; error?: grpc.ServiceError }> {
  const definition = services.field.service[method];
  const body = definition.requestSerialize(request as never);
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      definition.path,
      (bytes: Buffer) => bytes,
      (bytes: Buffer) => bytes,
      body,
      { deadline: Date.now() + 20_000 },
      (error, bytes) => resolve(error ? { error } : { bytes }),
    );
  });
}

describe("a large field-service call cut across two workers", () => {
  test("Seal answers every record in order, and Open answers byte for byte as one worker does", async () => {
    const plain = records(RECORDS);
    const sealed = await call<{ records: WireRecord<string>[]; key_id: string }>(
      split.clients.field,
      "Seal",
      { records: plain, uid: "split" },
    );
    assert.deepEqual(
      sealed.records.map((record) => record.record_id),
      plain.map((record) => record.record_id),
    );
    const request = { records: sealed.records, uid: "split" };
    const [twoWorkers, oneWorker] = await Promise.all([
      raw(split.clients.field, "Open", request),
      raw(single.clients.field, "Open", request),
    ]);
    assert.equal(twoWorkers.error, undefined);
    assert.ok(oneWorker.bytes !== undefined && oneWorker.bytes.length > 100_000);
    assert.ok(twoWorkers.bytes?.equals(oneWorker.bytes), "the same bytes as one worker's answer");
    const opened = services.field.service.Open.responseDeserialize(twoWorkers.bytes as Buffer) as {
      records: WireRecord<Buffer>[];
    };
    assert.deepEqual(opened.records, plain);
  });

  test("a bad value late in the call fails it with the status and record index one worker gives", async () => {
    const sealed = (
      await call<{ records: WireRecord<string>[] }>(split.clients.field, "Seal", {
        records: records(RECORDS),
      })
    ).records;
    const bad = sealed[170] as WireRecord<string>;
    sealed[170] = { ...bad, record_id: "moved" };
    const [twoWorkers, oneWorker] = await Promise.all([
      raw(split.clients.field, "Open", { records: sealed }),
      raw(single.clients.field, "Open", { records: sealed }),
    ]);
    assert.ok(twoWorkers.error !== undefined && oneWorker.error !== undefined);
    assert.equal(twoWorkers.error.code, oneWorker.error.code);
    assert.equal(twoWorkers.error.details, oneWorker.error.details);
    assert.match(twoWorkers.error.details, /^record 170 field "f\d": decryption failed/);
  });

  test("the field budget is the whole call's, however it is cut", async () => {
    const over = records(RECORDS + 1);
    const [twoWorkers, oneWorker] = await Promise.all([
      raw(split.clients.field, "Seal", { records: over }),
      raw(single.clients.field, "Seal", { records: over }),
    ]);
    assert.ok(twoWorkers.error !== undefined && oneWorker.error !== undefined);
    assert.equal(twoWorkers.error.code, oneWorker.error.code);
    assert.equal(twoWorkers.error.details, oneWorker.error.details);
    assert.match(twoWorkers.error.details, /more than 1000 fields \(--max-fields-per-request\)/);
  });
});
