import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { describe, test } from "node:test";
import { type ClientReadableStream, status } from "@grpc/grpc-js";
import { call, callError, newMasterKey, suiteDaemon } from "../support/daemon-process.js";

describe("operations: probes, metrics, gRPC health, logs", () => {
  const masterKey = newMasterKey();
  const suite = suiteDaemon({ env: { ENCRYPTION_MASTER_KEY: masterKey } });
  const http = (path: string, method = "GET") =>
    fetch(`http://${suite.daemon.httpAddress}${path}`, { method });

  test("the HTTP probes listen on loopback and answer ok", async () => {
    assert.match(suite.daemon.httpAddress, /^127\.0\.0\.1:\d+$/);
    for (const path of ["/healthz", "/livez", "/readyz"]) {
      const response = await http(path);
      assert.equal(response.status, 200, path);
      assert.equal(await response.text(), "ok\n");
    }
    assert.equal((await http("/nothing")).status, 404);
    assert.equal((await http("/healthz", "POST")).status, 405);
  });

  test("metrics show the field workers: how many, busy, waiting, their busy time and restarts", async () => {
    const before = await (await http("/metrics")).text();
    const busyBefore = Number(
      /^kms_envelope_field_worker_busy_seconds_total (\S+)$/m.exec(before)?.[1],
    );
    await call(suite.clients.field, "Seal", {
      records: Array.from({ length: 50 }, (_, index) => ({
        workspace: "ws",
        resource: "users",
        record_id: `u${index}`,
        fields: { email: randomBytes(64) },
      })),
    });
    const text = await (await http("/metrics")).text();
    assert.match(text, /\nkms_envelope_field_workers [1-9]\d*\n/);
    assert.match(text, /\nkms_envelope_field_workers_busy 0\n/);
    assert.match(text, /\nkms_envelope_field_worker_queue 0\n/);
    assert.match(text, /\nkms_envelope_field_worker_restarts_total 0\n/);
    const busyAfter = Number(
      /^kms_envelope_field_worker_busy_seconds_total (\S+)$/m.exec(text)?.[1],
    );
    assert.ok(busyAfter > busyBefore, `busy time grew: ${busyBefore} -> ${busyAfter}`);
  });

  test("metrics count calls by method and status code, and name the primary key id", async () => {
    const sealed = await call<{ ciphertext: Buffer; key_id: string }>(
      suite.clients.kmsV2,
      "Encrypt",
      {
        plaintext: randomBytes(32),
        uid: "m",
      },
    );
    await call(suite.clients.kmsV2, "Decrypt", {
      ciphertext: sealed.ciphertext,
      key_id: sealed.key_id,
      uid: "m",
    });
    await callError(suite.clients.kmsV2, "Decrypt", {
      ciphertext: Buffer.alloc(0),
      key_id: sealed.key_id,
      uid: "m",
    });
    await call(suite.clients.kmsV2, "Status", {});
    const text = await (await http("/metrics")).text();
    assert.match(
      text,
      /kms_envelope_grpc_requests_total\{method="\/v2\.KeyManagementService\/Encrypt",code="OK"\} [1-9]/,
    );
    assert.match(
      text,
      /kms_envelope_grpc_requests_total\{method="\/v2\.KeyManagementService\/Decrypt",code="INVALID_ARGUMENT"\} [1-9]/,
    );
    assert.match(
      text,
      /kms_envelope_grpc_request_duration_seconds_bucket\{le="0\.001",method="\/v2\.KeyManagementService\/Decrypt"\}/,
    );
    const keyIdHash = `sha256:${createHash("sha256").update(suite.daemon.keyId).digest("hex")}`;
    assert.ok(
      text.includes(
        `kms_envelope_primary_key_info{key_id="${suite.daemon.keyId}",key_id_hash="${keyIdHash}"} 1`,
      ),
    );
    // kube-apiserver's key-id families: the same hash, so they join the apiserver's own series.
    assert.match(
      text,
      new RegExp(
        `apiserver_envelope_encryption_key_id_hash_total\\{transformation_type="to_storage",provider_name="local",key_id_hash="${keyIdHash}"\\} [1-9]`,
      ),
    );
    assert.match(
      text,
      new RegExp(
        `apiserver_envelope_encryption_key_id_hash_total\\{transformation_type="from_storage",provider_name="local",key_id_hash="${keyIdHash}"\\} 1\n`,
      ),
      "only the decryption that succeeded counts",
    );
    assert.match(
      text,
      new RegExp(
        `apiserver_envelope_encryption_key_id_hash_status_last_timestamp_seconds\\{provider_name="local",key_id_hash="${keyIdHash}"\\} 1\\d{9}`,
      ),
      "the launcher's Status calls are recorded",
    );
    assert.match(text, /kms_envelope_ready 1\n/);
    assert.match(text, /kms_envelope_provider_healthy\{provider="local"\} 1/);
    assert.match(text, /kms_envelope_process_resident_memory_bytes/);
  });

  test("gRPC health answers SERVING for the daemon and its services, NOT_FOUND for others", async () => {
    for (const service of ["", "v2.KeyManagementService", "kms_envelope.field.v1.FieldService"]) {
      assert.deepEqual(await call(suite.clients.health, "Check", { service }), {
        status: "SERVING",
      });
    }
    const unknown = await callError(suite.clients.health, "Check", { service: "nope.Service" });
    assert.equal(unknown.code, status.NOT_FOUND);
  });

  test("gRPC health Watch streams the current status", async () => {
    const stream = (
      suite.clients.health as unknown as {
        Watch: (request: object) => ClientReadableStream<{ status: string }>;
      }
    ).Watch({ service: "" });
    const first = await new Promise<{ status: string }>((resolve, reject) => {
      stream.once("data", resolve);
      stream.once("error", reject);
    });
    assert.equal(first.status, "SERVING");
    stream.cancel();
  });

  test("logs are JSON lines that carry the request uid of a refused call", async () => {
    await callError(suite.clients.kmsV2, "Decrypt", {
      ciphertext: Buffer.from([9, 9, 9]),
      key_id: suite.daemon.keyId,
      uid: "0b6f4a3e-uid-under-test",
    });
    await new Promise((resolve) => setTimeout(resolve, 200));
    const record = suite.daemon
      .logRecords()
      .find((entry) => entry.uid === "0b6f4a3e-uid-under-test");
    assert.ok(record, "a log line carries the uid");
    assert.equal(record.level, "warn");
    assert.equal(record.method, "/v2.KeyManagementService/Decrypt");
    assert.equal(record.grpcCode, "INVALID_ARGUMENT");
  });

  test("no plaintext, key, field value or lookup token reaches any log line, even at debug level", async () => {
    const marker = `MARKER-${randomBytes(12).toString("hex")}`;
    const plaintext = Buffer.from(marker);
    const v2 = await call<{ ciphertext: Buffer; key_id: string }>(suite.clients.kmsV2, "Encrypt", {
      plaintext,
      uid: "secret-test",
    });
    await call(suite.clients.kmsV2, "Decrypt", {
      ciphertext: v2.ciphertext,
      key_id: v2.key_id,
      uid: "secret-test",
    });
    const v1 = await call<{ cipher: Buffer }>(suite.clients.kmsV1, "Encrypt", {
      version: "v1beta1",
      plain: plaintext,
    });
    await call(suite.clients.kmsV1, "Decrypt", { version: "v1beta1", cipher: v1.cipher });
    const sealed = await call<{
      records: {
        workspace: string;
        resource: string;
        record_id: string;
        fields: Record<string, string>;
      }[];
    }>(suite.clients.field, "Seal", {
      records: [
        { workspace: "ws", resource: "users", record_id: "u1", fields: { email: plaintext } },
      ],
    });
    await call(suite.clients.field, "Open", { records: sealed.records });
    const place = { workspace: "ws", resource: "users", field: "email", uid: "secret-test" };
    const looked = await call<{ values: { tokens: string[] }[] }>(suite.clients.field, "Lookup", {
      ...place,
      normalizers: ["trim"],
      values: [plaintext],
    });
    // Failures too: a tampered value and a value moved to another record.
    const tampered = Buffer.from(v2.ciphertext);
    tampered[tampered.length - 1] = (tampered[tampered.length - 1] as number) ^ 1;
    await callError(suite.clients.kmsV2, "Decrypt", {
      ciphertext: tampered,
      key_id: v2.key_id,
      uid: "secret-test",
    });
    await callError(suite.clients.field, "Open", {
      records: [{ ...sealed.records[0], record_id: "u2" }],
    });
    await callError(suite.clients.field, "Lookup", {
      ...place,
      normalizers: ["upper"],
      values: [plaintext],
    });
    await new Promise((resolve) => setTimeout(resolve, 200));

    const log = suite.daemon.lines.join("\n");
    const keyBytes = Buffer.from(masterKey, "base64");
    const forbidden = {
      marker,
      "marker (base64)": plaintext.toString("base64"),
      "marker (hex)": plaintext.toString("hex"),
      "master key (base64)": masterKey,
      "master key (hex)": keyBytes.toString("hex"),
      "sealed field value": sealed.records[0]?.fields.email as string,
      "lookup token": looked.values[0]?.tokens[0] as string,
      "v2 ciphertext (base64)": v2.ciphertext.toString("base64"),
    };
    for (const [what, text] of Object.entries(forbidden)) {
      assert.ok(!log.includes(text), `${what} appeared in the log`);
    }
    assert.ok(
      suite.daemon
        .logRecords()
        .some((entry) => entry.uid === "secret-test" && entry.level === "debug"),
      "debug logging was on",
    );
  });
});
