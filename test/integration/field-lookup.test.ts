import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { status } from "@grpc/grpc-js";
import { deriveWorkspaceKey } from "../../src/crypto/derivation.js";
import {
  computeLookupTokens,
  type Normalizer,
  normalizeLookupValue,
  parseLookupToken,
} from "../../src/crypto/lookup-token.js";
import { FieldServiceClient } from "../../src/fields/field-service-client.js";
import {
  call,
  callError,
  newMasterKey,
  type SuiteDaemon,
  suiteDaemon,
} from "../support/daemon-process.js";

interface LookupRequest {
  workspace: string;
  resource: string;
  field: string;
  normalizers: string[];
  values: Buffer[];
}
type LookupResponse = { values: { tokens: string[] }[]; key_id: string };

const EMAIL: LookupRequest = {
  workspace: "ws-acme",
  resource: "users.obot.obot.ai",
  field: "email",
  normalizers: ["trim", "lowercase"],
  values: [],
};

const texts = (...values: string[]) => values.map((value) => Buffer.from(value, "utf8"));

function lookup(suite: SuiteDaemon, request: Partial<LookupRequest>): Promise<LookupResponse> {
  return call<LookupResponse>(suite.clients.field, "Lookup", { ...EMAIL, ...request, uid: "t" });
}

/** The primary-version token of each value. */
async function primaryTokens(suite: SuiteDaemon, request: Partial<LookupRequest>) {
  return (await lookup(suite, request)).values.map(({ tokens }) => tokens[0] as string);
}

describe("field-service Lookup over the daemon's Unix socket", () => {
  const masterKey = newMasterKey();
  // A small cap, so the refusal of a request with too many values is cheap to reach.
  const suite = suiteDaemon({
    env: { ENCRYPTION_MASTER_KEY: masterKey },
    args: ["--max-fields-per-request", "5"],
  });

  test("equal values after trim and lowercase share a token under the primary key id; others differ", async () => {
    const answer = await lookup(suite, {
      values: texts(" Alice@Example.COM\u3000", "alice@example.com", "bob@example.com"),
    });
    assert.equal(answer.key_id, suite.daemon.keyId);
    assert.equal(answer.values.length, 3);
    for (const { tokens } of answer.values) {
      assert.equal(tokens.length, 1, "one token per loaded master-key version");
      assert.equal(parseLookupToken(tokens[0] as string).keyId, suite.daemon.keyId);
    }
    const [alice, aliceAgain, bob] = answer.values.map(({ tokens }) => tokens[0]);
    assert.equal(alice, aliceAgain);
    assert.notEqual(alice, bob);
  });

  test("the daemon's tokens are the core's, normalizers applied in the order given", async () => {
    const values = ["  JOSE\u0301@Example.com", "T\u0308", "İSTANBUL", ""];
    const workspaceKey = deriveWorkspaceKey(Buffer.from(masterKey, "base64"), EMAIL.workspace);
    for (const normalizers of [[], ["nfc", "lowercase"], ["trim", "lowercase", "nfc"]]) {
      const expected = computeLookupTokens(
        suite.daemon.keyId,
        workspaceKey,
        EMAIL.resource,
        EMAIL.field,
        values.map((value) => normalizeLookupValue(value, normalizers as Normalizer[])),
      );
      assert.deepEqual(
        await primaryTokens(suite, { normalizers, values: texts(...values) }),
        expected,
        normalizers.join(","),
      );
    }
  });

  test("the same value in another workspace, resource or field gets another token", async () => {
    const values = texts("alice@example.com");
    const tokens = [
      ...(await primaryTokens(suite, { values })),
      ...(await primaryTokens(suite, { values, workspace: "ws-globex" })),
      ...(await primaryTokens(suite, { values, resource: "identities.obot.obot.ai" })),
      ...(await primaryTokens(suite, { values, field: "recoveryEmail" })),
    ];
    assert.equal(new Set(tokens).size, 4);
  });

  test("without normalizers the value is taken as sent: letter case, white space and a leading BOM count", async () => {
    const [plain, upper, spaced, marked] = await primaryTokens(suite, {
      normalizers: [],
      values: texts("alice", "ALICE", " alice", "\ufeffalice"),
    });
    assert.equal(new Set([plain, upper, spaced, marked]).size, 4);
    const [trimmed] = await primaryTokens(suite, {
      normalizers: ["trim"],
      values: texts("\ufeffalice"),
    });
    assert.equal(
      trimmed,
      (await primaryTokens(suite, { normalizers: ["trim"], values: texts("alice") }))[0],
    );
  });

  test("no values, no tokens; an empty value has a token like any other", async () => {
    assert.deepEqual((await lookup(suite, { values: [] })).values, []);
    const [empty, blank] = await primaryTokens(suite, { values: texts("", " \t") });
    assert.equal(empty, blank);
  });

  test("bad requests are INVALID_ARGUMENT with a message that names the part at fault, never the value", async () => {
    const secret = "alice-secret@example.com";
    const cases: [Partial<LookupRequest>, string][] = [
      [{ workspace: "" }, "workspace is required"],
      [{ resource: "" }, "resource is required"],
      [{ field: "" }, "field is required"],
      [{ field: "f".repeat(1025) }, "field is longer than 1024 bytes"],
      [
        { normalizers: ["trim", "upper"] },
        'normalizers[1] is "upper": use one of trim, lowercase, nfc',
      ],
      [
        { normalizers: ["trim", "lowercase", "trim"] },
        "normalizers[2] repeats trim: name each normalizer at most once",
      ],
      [
        { values: texts("a", "b", "c", "d", "e", secret) },
        "the request has 6 values; at most 5 (--max-fields-per-request): split it into smaller requests",
      ],
      [
        { values: [Buffer.from(secret), Buffer.from([0x61, 0xff, 0x62])] },
        "values[1] is not valid UTF-8: send the value as UTF-8 text",
      ],
      [
        // An encoded lone surrogate (U+D800) is not UTF-8 either.
        { values: [Buffer.from([0xed, 0xa0, 0x80])] },
        "values[0] is not valid UTF-8: send the value as UTF-8 text",
      ],
    ];
    for (const [change, message] of cases) {
      const error = await callError(suite.clients.field, "Lookup", {
        ...EMAIL,
        values: texts(secret),
        ...change,
      });
      assert.equal(error.code, status.INVALID_ARGUMENT, message);
      assert.equal(error.details, message);
    }
  });

  test("FieldServiceClient.lookup returns the daemon's tokens and refuses text with no UTF-8 form", async () => {
    const query = { ...EMAIL, normalizers: ["trim", "lowercase"] as Normalizer[] };
    const client = new FieldServiceClient({
      socketPath: suite.daemon.socketPath,
      timeoutMs: 5_000,
    });
    try {
      const answer = await client.lookup({ ...query, values: ["Alice@Example.com "] });
      assert.equal(answer.keyId, suite.daemon.keyId);
      assert.deepEqual(answer.tokens, [
        await primaryTokens(suite, { values: texts("alice@example.com") }),
      ]);
      await assert.rejects(client.lookup({ ...query, values: ["ok", "a\ud800"] }), {
        code: "INVALID_REQUEST",
        message:
          "values[1] is not well-formed Unicode (it has a lone surrogate): pass text that has a UTF-8 form",
      });
      await assert.rejects(client.lookup({ ...query, field: "", values: ["a"] }), (error) => {
        assert.equal((error as { code: string }).code, "INVALID_REQUEST");
        assert.match((error as Error).message, /Lookup refused: field is required/);
        return true;
      });
    } finally {
      client.close();
    }
  });
});

describe("field-service Lookup across a master-key rotation (local provider)", () => {
  const oldKey = newMasterKey();
  const newKey = newMasterKey();
  const values = texts("Alice@Example.com", "bob@example.com");
  const before = suiteDaemon({ env: { ENCRYPTION_MASTER_KEY: oldKey } });
  const after = suiteDaemon({
    env: { ENCRYPTION_MASTER_KEY: newKey, ENCRYPTION_MASTER_KEY_PREVIOUS: oldKey },
  });

  test("after the rotation each value has the new primary's token first, then the one indexed before", async () => {
    const indexed = await lookup(before, { values });
    const rotated = await lookup(after, { values });
    assert.notEqual(after.daemon.keyId, before.daemon.keyId);
    assert.equal(rotated.key_id, after.daemon.keyId);
    for (const [index, { tokens }] of rotated.values.entries()) {
      assert.equal(tokens.length, 2);
      assert.deepEqual(
        tokens.map((token) => parseLookupToken(token).keyId),
        [after.daemon.keyId, before.daemon.keyId],
      );
      assert.equal(tokens[1], indexed.values[index]?.tokens[0], "the old token still matches");
      assert.notEqual(tokens[0], tokens[1]);
    }
  });
});
