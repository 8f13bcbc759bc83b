import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { lstat, readFile, rm, writeFile } from "node:fs/promises";
import * as http2 from "node:http2";
import { connect as connectSocket } from "node:net";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { status } from "@grpc/grpc-js";
import { PACKAGE_ROOT } from "../../src/package-info.js";
import {
  call,
  callError,
  DaemonProcess,
  dial,
  newMasterKey,
  runCli,
  startCli,
  suiteDaemon,
  temporaryDirectory,
} from "../support/daemon-process.js";

// The daemon sits on kube-apiserver's critical path: these are the ways a client, a large
// batch, a signal at the wrong moment or an operator could take it down (issue 11).

const CUSTOM_MODULE = join(PACKAGE_ROOT, "test/fixtures/custom-provider.ts");

interface WireRecord<Value> {
  workspace: string;
  resource: string;
  record_id: string;
  fields: Record<string, Value>;
}

function records(count: number, fieldsEach: number): WireRecord<Buffer>[] {
  return Array.from({ length: count }, (_, index) => ({
    workspace: "ws",
    resource: "credentials",
    record_id: `r${index}`,
    fields: Object.fromEntries(
      Array.from({ length: fieldsEach }, (_, field) => [`f${field}`, randomBytes(16)]),
    ),
  }));
}

async function waitFor(check: () => boolean | Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe("field batches never hold up KMS", () => {
  const suite = suiteDaemon();

  test("KMS v2 Status is answered while the largest documented batch (10,000 records x 10 fields) is being sealed", async () => {
    const batch = records(10_000, 10);
    let pending = true;
    const statusLoop = (async () => {
      while (pending) await call(suite.clients.kmsV2, "Status", {});
    })();
    const sealed = await call<{ records: WireRecord<string>[]; key_id: string }>(
      suite.clients.field,
      "Seal",
      { records: batch, uid: "large" },
    );
    pending = false;
    await statusLoop;
    assert.equal(sealed.records.length, 10_000);
    // The daemon's own log orders events as they happened in it: between the batch leaving
    // the event loop and its answer, Status calls must have been served. With the batch on
    // the event loop (issue 11), none could be, whatever the machine's speed.
    const events = suite.daemon.logRecords().filter((record) => typeof record.method === "string");
    const sealMethod = "/kms_envelope.field.v1.FieldService/Seal";
    const start = events.findLastIndex(
      (record) => record.method === sealMethod && record.msg === "call handed off the event loop",
    );
    const end = events.findLastIndex(
      (record) => record.method === sealMethod && record.msg === "call served",
    );
    assert.ok(start >= 0 && end > start, "the batch's start and end are logged");
    const statusServed = events
      .slice(start, end)
      .filter(
        (record) =>
          record.method === "/v2.KeyManagementService/Status" && record.msg === "call served",
      ).length;
    assert.ok(statusServed >= 3, `${statusServed} Status calls were served during the batch`);
  });
});

describe("field batch bounds", () => {
  const suite = suiteDaemon({
    args: ["--max-fields-per-request", "50", "--max-fields-per-record", "5"],
  });

  test("a record with more fields than --max-fields-per-record is INVALID_ARGUMENT naming the flag", async () => {
    const error = await callError(suite.clients.field, "Seal", { records: records(2, 6) });
    assert.equal(error.code, status.INVALID_ARGUMENT);
    assert.equal(
      error.details,
      "records[0] has 6 fields; a record may have at most 5 (--max-fields-per-record)",
    );
  });

  test("a batch with more fields than --max-fields-per-request is INVALID_ARGUMENT naming the flag", async () => {
    const error = await callError(suite.clients.field, "Open", {
      records: Array.from({ length: 11 }, (_, index) => ({
        workspace: "ws",
        resource: "credentials",
        record_id: `r${index}`,
        fields: Object.fromEntries(Array.from({ length: 5 }, (_, f) => [`f${f}`, "x"])),
      })),
    });
    assert.equal(error.code, status.INVALID_ARGUMENT);
    assert.match(error.details, /more than 50 fields \(--max-fields-per-request\): split it/);
  });

  test("a batch within the bounds is served", async () => {
    const sealed = await call<{ records: WireRecord<string>[] }>(suite.clients.field, "Seal", {
      records: records(10, 5),
    });
    assert.equal(sealed.records.length, 10);
  });
});

describe("SIGTERM ends the daemon whatever its peers do", () => {
  let directory: Awaited<ReturnType<typeof temporaryDirectory>>;
  const env = { ENCRYPTION_MASTER_KEY: newMasterKey() };
  before(async () => {
    directory = await temporaryDirectory();
  });
  after(() => directory.remove());

  test("idle grpc clients, silent sockets and a stuck raw call do not keep it alive past --shutdown-timeout", async () => {
    const socketPath = join(directory.path, "peers.sock");
    const daemon = await DaemonProcess.start({
      socketPath,
      env,
      args: ["--shutdown-timeout", "1s"],
    });
    const idle = [dial(socketPath), dial(socketPath), dial(socketPath)];
    for (const clients of idle) await call(clients.kmsV2, "Status", {});
    // Peers that connect and never speak HTTP/2 at all: nothing they do ends the connection.
    const silent = Array.from({ length: 3 }, () =>
      connectSocket(socketPath).on("error", () => undefined),
    );
    const raw = http2.connect("http://localhost", {
      createConnection: () => connectSocket(socketPath),
    });
    raw.on("error", () => undefined);
    const stuck = raw.request({
      ":method": "POST",
      ":path": "/v2.KeyManagementService/Encrypt",
      "content-type": "application/grpc",
    });
    stuck.on("error", () => undefined);
    stuck.write(Buffer.of(0, 0, 0, 1, 0));
    await new Promise((resolve) => setTimeout(resolve, 100));

    const started = Date.now();
    const exitCode = await Promise.race([
      daemon.stop("SIGTERM"),
      new Promise<string>((resolve) => setTimeout(() => resolve("still running"), 15_000)),
    ]);
    assert.equal(exitCode, 0, `exited after ${Date.now() - started} ms`);
    await assert.rejects(lstat(socketPath), { code: "ENOENT" });
    for (const clients of idle) clients.close();
    for (const socket of silent) socket.destroy();
    raw.destroy();
  });
});

describe("SIGTERM at any moment of start-up exits 0 and leaves no socket", () => {
  let directory: Awaited<ReturnType<typeof temporaryDirectory>>;
  before(async () => {
    directory = await temporaryDirectory();
  });
  after(() => directory.remove());

  // Measured from the first log line: before it runs, the Node runtime (and, in these tests,
  // the TypeScript loader) is still booting and no code of ours can catch a signal.
  for (const delayMs of [0, 5, 20, 50, 100, 200]) {
    test(`a SIGTERM ${delayMs} ms after "kms-envelope starting"`, async () => {
      const socketPath = join(directory.path, `early-${delayMs}.sock`);
      const cli = startCli(["serve", "--socket", socketPath, "--http-address", "127.0.0.1:0"], {
        ENCRYPTION_MASTER_KEY: newMasterKey(),
      });
      await waitFor(() => cli.stdout().includes("kms-envelope starting"), "the first log line");
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      cli.child.kill("SIGTERM");
      assert.equal(await cli.exited, 0, cli.stderr());
      assert.equal(existsSync(socketPath), false, "no socket is left behind");
    });
  }

  test("a SIGTERM while the custody provider is still being asked for the keys", async () => {
    const keyring = join(directory.path, "keyring.yaml");
    const stall = join(directory.path, "stall");
    const calls = join(directory.path, "calls.log");
    const env = {
      CUSTOM_PROVIDER_KEK: randomBytes(32).toString("base64"),
      CUSTOM_PROVIDER_STALL: stall,
      CUSTOM_PROVIDER_CALLS: calls,
    };
    const created = await runCli(
      ["keygen", "--provider", CUSTOM_MODULE, "--key-ref", "custom://k", "--keyring", keyring],
      env,
    );
    assert.equal(created.code, 0, created.stderr);
    await rm(calls, { force: true });
    await writeFile(stall, "");
    const socketPath = join(directory.path, "stalled.sock");
    const cli = startCli(
      [
        "serve",
        "--socket",
        socketPath,
        "--http-address",
        "127.0.0.1:0",
        "--keyring",
        keyring,
        "--provider-module",
        CUSTOM_MODULE,
      ],
      env,
    );
    await waitFor(
      async () => existsSync(calls) && (await readFile(calls, "utf8")).includes("unwrapKey"),
      "the daemon to ask the provider for its key",
    );
    cli.child.kill("SIGTERM");
    assert.equal(await cli.exited, 0, cli.stderr());
    assert.equal(existsSync(socketPath), false);
    assert.match(cli.stdout(), /"msg":"stopped during start-up"/);
  });
});
