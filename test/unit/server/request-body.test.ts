import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { KmsEnvelopeError } from "../../../src/errors.js";
import { frameMessage } from "../../../src/server/grpc-framing.js";
import { MemoryBudget } from "../../../src/server/memory-budget.js";
import { RequestBody } from "../../../src/server/request-body.js";

const MiB = 1024 * 1024;

function rejection(code: string, message: RegExp) {
  return (error: unknown): boolean => {
    assert.ok(error instanceof KmsEnvelopeError, `expected a KmsEnvelopeError, got ${error}`);
    assert.equal(error.code, code);
    assert.match(error.message, message);
    return true;
  };
}

function body(maxMessageBytes = 4 * MiB, budget = new MemoryBudget(64 * MiB)) {
  return { body: new RequestBody({ maxMessageBytes, budget }), budget };
}

describe("RequestBody: one message, one buffer", () => {
  test("a message split into 1-byte chunks comes out whole, prefix split included", () => {
    const message = Buffer.from("the quick brown fox");
    const { body: request } = body();
    for (const byte of frameMessage(message)) request.append(Buffer.of(byte));
    assert.deepEqual(request.finish(), message);
  });

  test("however the frame is cut into chunks, the message comes out whole and its budget is returned", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 300 }),
        fc.array(fc.nat(), { maxLength: 12 }),
        (bytes, cuts) => {
          const message = Buffer.from(bytes);
          const framed = frameMessage(message);
          const points = [...new Set(cuts.map((cut) => cut % (framed.length + 1)))].sort(
            (a, b) => a - b,
          );
          const { body: request, budget } = body();
          let start = 0;
          for (const end of [...points, framed.length]) {
            request.append(framed.subarray(start, end));
            start = end;
          }
          assert.deepEqual(request.finish(), message);
          request.release();
          assert.equal(budget.used, 0);
        },
      ),
      { numRuns: 500 },
    );
  });

  test("a 4 MiB message declared and sent byte by byte holds one buffer, never more than its size", () => {
    const { body: request, budget } = body();
    const declared = 4 * MiB;
    const prefix = Buffer.alloc(5);
    prefix.writeUInt32BE(declared, 1);
    request.append(prefix);
    assert.equal(budget.used, 64 * 1024, "a declared size is not trusted: 64 KiB to start");
    const chunk = Buffer.alloc(1, 7);
    for (let sent = 0; sent < 200_000; sent += 1) request.append(chunk);
    assert.ok(budget.used <= 256 * 1024, `grows with what arrived: ${budget.used}`);
    assert.equal(request.reservedBytes, budget.used);
    const rest = Buffer.alloc(declared - 200_000, 7);
    request.append(rest);
    assert.equal(budget.used, declared, "never more than the declared message");
    assert.equal(request.finish().length, declared);
    request.release();
    assert.equal(budget.used, 0);
  });

  test("an empty message (a Status request) is valid and holds nothing", () => {
    const { body: request, budget } = body();
    request.append(frameMessage(new Uint8Array(0)));
    assert.equal(request.finish().length, 0);
    assert.equal(budget.used, 0);
  });

  test("release zeroes the bytes: decoded bytes fields are views of this buffer", () => {
    const { body: request } = body();
    request.append(frameMessage(Buffer.from("a DEK seed")));
    const view = request.finish();
    request.release();
    assert.deepEqual(view, Buffer.alloc(10));
    request.release();
  });
});

describe("RequestBody: refusals at the byte that breaks the rule", () => {
  test("a declared length over --max-request-bytes is REQUEST_TOO_LARGE (RESOURCE_EXHAUSTED) before any body byte", () => {
    const { body: request, budget } = body(1024);
    const prefix = Buffer.alloc(5);
    prefix.writeUInt32BE(1025, 1);
    assert.throws(
      () => request.append(prefix),
      rejection("REQUEST_TOO_LARGE", /larger than the 1024 bytes allowed \(--max-request-bytes\)/),
    );
    assert.equal(budget.used, 0);
  });

  test("a compressed message is UNSUPPORTED_ENCODING (UNIMPLEMENTED)", () => {
    const { body: request } = body();
    const framed = frameMessage(Buffer.from("x"));
    framed[0] = 1;
    assert.throws(() => request.append(framed), rejection("UNSUPPORTED_ENCODING", /compressed/));
  });

  test("bytes past the declared length (a second message) are INVALID_REQUEST at once", () => {
    const { body: request } = body();
    assert.throws(
      () => request.append(Buffer.concat([frameMessage(Buffer.from("a")), Buffer.from("b")])),
      rejection("INVALID_REQUEST", /not exactly one length-prefixed message/),
    );
  });

  test("a body that ends early, or has no message at all, is INVALID_REQUEST", () => {
    const short = body().body;
    short.append(frameMessage(Buffer.from("abcdef")).subarray(0, 8));
    assert.throws(
      () => short.finish(),
      rejection("INVALID_REQUEST", /not exactly one length-prefixed message/),
    );
    const empty = body().body;
    empty.append(Buffer.of(0, 0));
    assert.throws(() => empty.finish(), rejection("INVALID_REQUEST", /carries no message/));
  });

  test("a body the budget cannot hold is OVERLOADED (RESOURCE_EXHAUSTED) naming the flags, and holds nothing", () => {
    const budget = new MemoryBudget(100 * 1024);
    const { body: request } = body(4 * MiB, budget);
    const prefix = Buffer.alloc(5);
    prefix.writeUInt32BE(MiB, 1);
    request.append(prefix);
    assert.throws(
      () => request.append(Buffer.alloc(80 * 1024)),
      rejection("OVERLOADED", /--max-connection-buffer-bytes, --max-buffer-bytes/),
    );
    request.release();
    assert.equal(budget.used, 0);
  });
});

describe("MemoryBudget", () => {
  test("a connection's budget draws on the daemon's: both limits hold", () => {
    const daemon = new MemoryBudget(100);
    const first = new MemoryBudget(60, { parent: daemon });
    const second = new MemoryBudget(60, { parent: daemon });
    assert.equal(first.tryReserve(60, false), true);
    assert.equal(first.tryReserve(1, false), false, "the connection's own limit");
    assert.equal(second.tryReserve(41, false), false, "the daemon's limit");
    assert.equal(second.tryReserve(40, false), true);
    assert.equal(daemon.used, 100);
    first.release(60);
    second.release(40);
    assert.equal(daemon.used, 0);
  });

  test("the small-call reserve is out of reach of large calls only", () => {
    const daemon = new MemoryBudget(100, { smallReserve: 30 });
    assert.equal(daemon.tryReserve(71, false), false);
    assert.equal(daemon.tryReserve(70, false), true);
    assert.equal(daemon.tryReserve(1, false), false, "large calls stop at limit - reserve");
    assert.equal(daemon.tryReserve(30, true), true, "small calls may use the reserve");
    assert.equal(daemon.tryReserve(1, true), false);
  });

  test("forceReserve counts answers already computed, so the next calls see the true total", () => {
    const daemon = new MemoryBudget(100);
    const connection = new MemoryBudget(50, { parent: daemon });
    connection.forceReserve(80);
    assert.equal(daemon.used, 80);
    assert.equal(connection.tryReserve(1, true), false);
    connection.release(80);
    assert.equal(daemon.used, 0);
  });
});
