/**
 * The field layer's client of the daemon, as applications meet it: what each failure becomes,
 * against the real daemon, an absent one, and a server on the socket that answers wrongly.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { FieldServiceClient } from "../../src/fields/field-service-client.js";
import { services } from "../../src/wire/protos.js";
import { suiteDaemon, temporaryDirectory } from "../support/daemon-process.js";
import { hasCode } from "../support/error-assertions.js";

const plain = (fields: Record<string, string>) => ({
  workspace: "ws-1",
  recordId: "r-1",
  fields: Object.fromEntries(
    Object.entries(fields).map(([name, value]) => [name, Buffer.from(value)]),
  ),
});

describe("FieldServiceClient against the daemon", () => {
  const suite = suiteDaemon();
  let client: FieldServiceClient;
  before(() => {
    client = new FieldServiceClient({ socketPath: suite.daemon.socketPath, timeoutMs: 5_000 });
  });
  after(() => client.close());

  test("a Seal the daemon refuses is a bad request carrying the daemon's reason, not a decryption failure", async () => {
    await assert.rejects(
      client.seal("notes", [{ ...plain({ body: "x" }), workspace: "" }]),
      hasCode("INVALID_REQUEST", /Seal refused: .*workspace/),
    );
  });

  test("an Open of a tampered value is a decryption failure", async () => {
    const { records } = await client.seal("notes", [plain({ body: "secret" })]);
    const sealed = records[0]?.fields.body as string;
    const tampered = `${sealed.slice(0, -6)}${sealed.endsWith("AAAA==") ? "BBBB==" : "AAAA=="}`;
    await assert.rejects(
      client.open("notes", [{ workspace: "ws-1", recordId: "r-1", fields: { body: tampered } }]),
      hasCode("DECRYPTION_FAILED"),
    );
  });
});

describe("FieldServiceClient without a daemon, or with a wrong one", () => {
  let directory: Awaited<ReturnType<typeof temporaryDirectory>>;
  before(async () => {
    directory = await temporaryDirectory();
  });
  after(() => directory.remove());

  test("no daemon on the socket is DAEMON_UNREACHABLE, with how to check it", async () => {
    const socketPath = join(directory.path, "absent.sock");
    const client = new FieldServiceClient({ socketPath, timeoutMs: 1_000 });
    try {
      await assert.rejects(
        client.seal("notes", [plain({ body: "x" })]),
        hasCode("DAEMON_UNREACHABLE", /kms-envelope status --socket/),
      );
    } finally {
      client.close();
    }
  });

  test("an answer that drops a field or a record is refused, never read as empty values", async () => {
    const socketPath = join(directory.path, "wrong.sock");
    const server = new grpc.Server();
    // Answers every call with the first record only, and without its second field.
    const answer = (records: { workspace: string; resource: string; record_id: string }[]) => ({
      records: records
        .slice(0, 1)
        .map((record) => ({ ...record, fields: { body: Buffer.from("kmse:v1:x:y") } })),
      key_id: "local:x",
      stale: false,
    });
    server.addService(services.field.service, {
      Seal: (
        call: grpc.ServerUnaryCall<{ records: [] }, unknown>,
        done: grpc.sendUnaryData<unknown>,
      ) => done(null, answer(call.request.records)),
      Open: (
        call: grpc.ServerUnaryCall<{ records: [] }, unknown>,
        done: grpc.sendUnaryData<unknown>,
      ) => done(null, answer(call.request.records)),
    });
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(`unix:${socketPath}`, grpc.ServerCredentials.createInsecure(), (error) =>
        error ? reject(error) : resolve(),
      ),
    );
    const client = new FieldServiceClient({ socketPath, timeoutMs: 5_000 });
    try {
      await assert.rejects(
        client.seal("notes", [plain({ body: "x", title: "y" })]),
        hasCode("DAEMON_UNREACHABLE", /Seal answered other records or fields/),
      );
      await assert.rejects(
        client.open("notes", [
          { workspace: "ws-1", recordId: "r-1", fields: { body: "a" } },
          { workspace: "ws-1", recordId: "r-2", fields: { body: "b" } },
        ]),
        hasCode("DAEMON_UNREACHABLE", /Open answered other records or fields/),
      );
    } finally {
      client.close();
      server.forceShutdown();
    }
  });
});
