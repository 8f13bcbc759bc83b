import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { MethodDefinition } from "@grpc/grpc-js";
import fc from "fast-check";
import { joinResponses, splitRequest } from "../../../src/server/field-split.js";
import { services } from "../../../src/wire/protos.js";

const seal = services.field.service.Seal as MethodDefinition<object, object>;
const open = services.field.service.Open as MethodDefinition<object, object>;

interface Plain {
  workspace: string;
  resource: string;
  record_id: string;
  fields: Record<string, Uint8Array>;
}

const name = fc.stringMatching(/^[a-z][a-z0-9_.-]{0,12}$/);
const record: fc.Arbitrary<Plain> = fc.record({
  workspace: name,
  resource: name,
  record_id: name,
  fields: fc.dictionary(name, fc.uint8Array({ maxLength: 300 }), { maxKeys: 6 }),
});
const asBuffers = (records: Plain[]) =>
  records.map((r) => ({
    ...r,
    fields: Object.fromEntries(Object.entries(r.fields).map(([k, v]) => [k, Buffer.from(v)])),
  }));

describe("splitRequest and joinResponses", () => {
  test("the parts hold the request's records in order, each with its uid and a buffer of its own", () => {
    fc.assert(
      fc.property(
        fc.array(record, { minLength: 2, maxLength: 40 }),
        name,
        fc.integer({ min: 2, max: 8 }),
        (records, uid, wanted) => {
          const message = seal.requestSerialize({ records: asBuffers(records), uid });
          const parts = splitRequest(message, wanted, 10_000);
          assert.ok(parts !== undefined);
          assert.equal(parts.length, Math.min(wanted, records.length));
          const joined: unknown[] = [];
          for (const part of parts) {
            assert.equal(part.message.byteOffset, 0);
            assert.equal(part.message.byteLength, part.message.buffer.byteLength);
            const decoded = seal.requestDeserialize(Buffer.from(part.message)) as {
              records: unknown[];
              uid: string;
            };
            assert.equal(decoded.uid, uid);
            assert.ok(decoded.records.length > 0, "no part is empty");
            assert.equal(part.firstRecord, joined.length);
            joined.push(...decoded.records);
          }
          const whole = seal.requestDeserialize(message) as { records: unknown[] };
          assert.deepEqual(joined, whole.records);
        },
      ),
      { numRuns: 300 },
    );
  });

  test("joined answers are byte for byte the answer to the whole request, stale if any part was", () => {
    fc.assert(
      fc.property(
        fc.array(fc.array(record, { minLength: 1, maxLength: 8 }), { minLength: 1, maxLength: 5 }),
        fc.array(fc.boolean(), { minLength: 5, maxLength: 5 }),
        name,
        (groups, staleness, keyId) => {
          const parts = groups.map((records, index) => ({
            response: open.responseSerialize({
              records: asBuffers(records),
              stale: staleness[index] === true,
              key_id: keyId,
            }),
            stale: staleness[index] === true,
          }));
          const whole = open.responseSerialize({
            records: asBuffers(groups.flat()),
            stale: parts.some((part) => part.stale),
            key_id: keyId,
          });
          assert.deepEqual(Buffer.from(joinResponses(parts)), whole);
        },
      ),
      { numRuns: 300 },
    );
  });

  test("nothing to cut: one record, too many records, or malformed protobuf", () => {
    const one = seal.requestSerialize({ records: asBuffers([fc.sample(record, 1)[0] as Plain]) });
    assert.equal(splitRequest(one, 4, 10_000), undefined);
    const three = seal.requestSerialize({ records: asBuffers(fc.sample(record, 3)) });
    assert.equal(
      splitRequest(three, 4, 2),
      undefined,
      "over the record limit: one worker refuses it",
    );
    assert.equal(splitRequest(three, 1, 10_000), undefined, "a single idle worker");
    assert.equal(splitRequest(three.subarray(0, three.length - 1), 4, 10_000), undefined);
    assert.equal(splitRequest(Buffer.from([0x0b, 0x01]), 4, 10_000), undefined, "a group");
  });
});
