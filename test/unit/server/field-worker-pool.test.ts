import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, describe, test } from "node:test";
import type { MethodDefinition } from "@grpc/grpc-js";
import { parseFieldValue } from "../../../src/crypto/field-value.js";
import { KmsEnvelopeError } from "../../../src/errors.js";
import { MasterKeySet } from "../../../src/keys/master-key-set.js";
import { createLogger } from "../../../src/ops/logger.js";
import { FieldWorkerPool } from "../../../src/server/field-worker-pool.js";
import { services } from "../../../src/wire/protos.js";

const seal = services.field.service.Seal as MethodDefinition<object, object>;
const open = services.field.service.Open as MethodDefinition<object, object>;
const LIMITS = { maxFieldsPerRequest: 100_000, maxFieldsPerRecord: 1000 };
const logger = createLogger("silent");

interface Sealed {
  records: {
    workspace: string;
    resource: string;
    record_id: string;
    fields: Record<string, string>;
  }[];
  key_id: string;
}

function sealRequest(fields: Record<string, Buffer>, count = 1): Buffer {
  return seal.requestSerialize({
    records: Array.from({ length: count }, (_, index) => ({
      workspace: "ws",
      resource: "credentials",
      record_id: `r${index}`,
      fields,
    })),
    uid: "pool-test",
  });
}

const pools: FieldWorkerPool[] = [];
after(async () => {
  for (const pool of pools) await pool.close();
});

async function startPool(keys: MasterKeySet, options: { size?: number; heapMb?: number } = {}) {
  const pool = await FieldWorkerPool.start({
    size: options.size ?? 1,
    keys,
    limits: LIMITS,
    logger,
    heapMb: options.heapMb,
  });
  pools.push(pool);
  return pool;
}

describe("FieldWorkerPool", () => {
  test("a Seal then Open round trip runs in a worker under the pool's keys, with the caller's uid", async () => {
    const keys = MasterKeySet.of("local", [randomBytes(32)]);
    const pool = await startPool(keys, { size: 2 });
    const secret = Buffer.from("ghp_token");
    const sealedOutcome = await pool.run("Seal", sealRequest({ token: secret }));
    assert.equal(sealedOutcome.error, undefined);
    assert.equal(sealedOutcome.uid, "pool-test");
    assert.equal(sealedOutcome.fields, 1);
    const sealed = seal.responseDeserialize(Buffer.from(sealedOutcome.response ?? [])) as Sealed;
    assert.equal(sealed.key_id, keys.primary.keyId);
    const value = sealed.records[0]?.fields.token as string;
    assert.equal(parseFieldValue(value).keyId, keys.primary.keyId);

    const openedOutcome = await pool.run(
      "Open",
      open.requestSerialize({ records: sealed.records, uid: "again" }),
    );
    const opened = open.responseDeserialize(Buffer.from(openedOutcome.response ?? [])) as {
      records: { fields: Record<string, Buffer> }[];
    };
    assert.deepEqual(opened.records[0]?.fields.token, secret);
  });

  test("refusals come back as the KmsEnvelopeError the worker raised", async () => {
    const pool = await startPool(MasterKeySet.of("local", [randomBytes(32)]));
    const outcome = await pool.run("Seal", Buffer.from([0xff, 0xff, 0xff]));
    assert.ok(outcome.error instanceof KmsEnvelopeError);
    assert.equal(outcome.error.code, "INVALID_REQUEST");
    assert.equal(outcome.error.message, "request is not a valid protobuf message for this method");
  });

  test("replaceKeys: later calls seal under the new primary, values under the old one still open", async () => {
    const oldKey = randomBytes(32);
    const newKey = randomBytes(32);
    const pool = await startPool(MasterKeySet.of("local", [oldKey]), { size: 2 });
    const before = seal.responseDeserialize(
      Buffer.from((await pool.run("Seal", sealRequest({ a: Buffer.from("x") }))).response ?? []),
    ) as Sealed;
    const rotated = MasterKeySet.of("local", [newKey, oldKey]);
    pool.replaceKeys(rotated);
    for (let index = 0; index < 4; index += 1) {
      const after = seal.responseDeserialize(
        Buffer.from((await pool.run("Seal", sealRequest({ a: Buffer.from("x") }))).response ?? []),
      ) as Sealed;
      assert.equal(after.key_id, rotated.primary.keyId, "every worker has the new keys");
    }
    const reopened = await pool.run("Open", open.requestSerialize({ records: before.records }));
    assert.equal(reopened.error, undefined);
    assert.equal(
      (open.responseDeserialize(Buffer.from(reopened.response ?? [])) as { stale: boolean }).stale,
      true,
    );
  });

  test("a worker that dies (heap exhausted) fails only its own call and is replaced", async () => {
    const pool = await startPool(MasterKeySet.of("local", [randomBytes(32)]), { heapMb: 16 });
    const huge = Object.fromEntries(
      Array.from({ length: 1000 }, (_, index) => [`f${index}`, Buffer.alloc(1024, index)]),
    );
    const killer = await pool.run("Seal", sealRequest(huge, 60));
    assert.ok(killer.error instanceof Error);
    assert.match(
      killer.error.message,
      /field worker stopped \(exit code \d+\) while running this call/,
    );
    const after = await pool.run("Seal", sealRequest({ small: Buffer.from("ok") }));
    assert.equal(after.error, undefined, "the replacement worker serves the next call");
  });

  test("past 256 waiting calls the pool answers OVERLOADED instead of queueing without end", async () => {
    const pool = await startPool(MasterKeySet.of("local", [randomBytes(32)]));
    const request = sealRequest({ a: Buffer.from("x") });
    const outcomes = await Promise.all(
      Array.from({ length: 300 }, () => pool.run("Seal", request)),
    );
    const overloaded = outcomes.filter(
      (outcome) => outcome.error instanceof KmsEnvelopeError && outcome.error.code === "OVERLOADED",
    );
    assert.equal(overloaded.length, 300 - 257, "one running, 256 waiting, the rest refused");
    assert.match(String(overloaded[0]?.error), /raise --field-workers/);
    assert.equal(outcomes.filter((outcome) => outcome.error === undefined).length, 257);
  });

  test("after close, calls are refused as the daemon shutting down", async () => {
    const pool = await startPool(MasterKeySet.of("local", [randomBytes(32)]));
    await pool.close();
    const outcome = await pool.run("Seal", sealRequest({ a: Buffer.from("x") }));
    assert.ok(outcome.error instanceof KmsEnvelopeError);
    assert.equal(outcome.error.code, "DAEMON_UNREACHABLE");
  });
});
