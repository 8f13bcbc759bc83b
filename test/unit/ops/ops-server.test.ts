import assert from "node:assert/strict";
import { request } from "node:http";
import { after, before, describe, test } from "node:test";
import type { HealthSnapshot } from "../../../src/keys/health-monitor.js";
import { createLogger } from "../../../src/ops/logger.js";
import { DaemonMetrics } from "../../../src/ops/metrics.js";
import { type OpsServer, startOpsServer } from "../../../src/ops/ops-server.js";
import type { ProbeSources } from "../../../src/ops/probes.js";

const HEALTHY: HealthSnapshot = { healthy: true, suspended: false, checkedAt: 1 };
const FAILING: HealthSnapshot = {
  healthy: false,
  suspended: false,
  errorClass: "user",
  message: "key disabled",
  failingSince: 1,
  checkedAt: 2,
};

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One HTTP request without keep-alive, so closing the server never waits on a pooled socket. */
function call(address: string, path: string, method = "GET"): Promise<Answer> {
  const url = new URL(path, `http://${address}`);
  return new Promise((resolve, reject) => {
    const outgoing = request(url, { method, agent: false }, (response) => {
      let body = "";
      response.setEncoding("utf8");
      response.on("data", (chunk: string) => {
        body += chunk;
      });
      response.on("end", () =>
        resolve({ status: response.statusCode ?? 0, headers: response.headers, body }),
      );
    });
    outgoing.on("error", reject);
    outgoing.end();
  });
}

describe("startOpsServer on 127.0.0.1 port 0", () => {
  let server: OpsServer;
  let health: HealthSnapshot = HEALTHY;
  let serving = false;
  const metrics = new DaemonMetrics();
  const sources: ProbeSources = {
    starting: () => false,
    health: () => health,
    selfTest: () => true,
    serving: () => serving,
  };

  before(async () => {
    metrics.setKeys("local:AAAAAAAAAAAAAAAA", 1);
    metrics.observeCall("/v2.KeyManagementService/Status", "OK", 0.0001);
    server = await startOpsServer({
      host: "127.0.0.1",
      port: 0,
      sources,
      metrics,
      logger: createLogger("silent"),
    });
  });

  after(async () => {
    await server.close();
  });

  test("the bound address reports the real port", () => {
    assert.match(server.address, /^127\.0\.0\.1:\d+$/);
    assert.notEqual(server.address, "127.0.0.1:0");
  });

  test("/healthz and /livez answer 200 ok when healthy", async () => {
    health = HEALTHY;
    for (const path of ["/healthz", "/livez"]) {
      const answer = await call(server.address, path);
      assert.equal(answer.status, 200, path);
      assert.equal(answer.body, "ok\n");
      assert.match(String(answer.headers["content-type"]), /^text\/plain/);
    }
  });

  test("/healthz answers 503 with the reason while the provider fails; /livez stays 200", async () => {
    health = FAILING;
    try {
      const healthz = await call(server.address, "/healthz");
      assert.equal(healthz.status, 503);
      assert.equal(healthz.body, "custody provider failing (user): key disabled\n");
      assert.equal((await call(server.address, "/livez")).status, 200);
    } finally {
      health = HEALTHY;
    }
  });

  test("/readyz answers 503 until the socket is serving, then 200", async () => {
    serving = false;
    const notReady = await call(server.address, "/readyz");
    assert.equal(notReady.status, 503);
    assert.equal(notReady.body, "gRPC socket is not serving yet\n");
    serving = true;
    assert.equal((await call(server.address, "/readyz")).status, 200);
  });

  test("a query string does not change the route", async () => {
    assert.equal((await call(server.address, "/healthz?verbose=1")).status, 200);
  });

  test("HEAD is allowed and answers without a body", async () => {
    const answer = await call(server.address, "/healthz", "HEAD");
    assert.equal(answer.status, 200);
    assert.equal(answer.body, "");
  });

  test("/metrics answers 200 in the Prometheus text format with kms_envelope_ metrics", async () => {
    const answer = await call(server.address, "/metrics");
    assert.equal(answer.status, 200);
    assert.equal(answer.headers["content-type"], metrics.registry.contentType);
    assert.match(answer.body, /^# HELP kms_envelope_/m);
    assert.match(
      answer.body,
      /kms_envelope_primary_key_info\{key_id="local:AAAAAAAAAAAAAAAA",key_id_hash="sha256:[0-9a-f]{64}"\} 1/,
    );
    assert.match(
      answer.body,
      /kms_envelope_grpc_requests_total\{method="\/v2\.KeyManagementService\/Status",code="OK"\} 1/,
    );
    const names = answer.body
      .split("\n")
      .filter((line) => line !== "" && !line.startsWith("#"))
      .map((line) => line.split(/[{ ]/)[0] ?? "");
    assert.ok(names.length > 0);
    for (const name of names) assert.ok(name.startsWith("kms_envelope_"), name);
  });

  test("an unknown path answers 404 listing the known ones", async () => {
    const answer = await call(server.address, "/secrets");
    assert.equal(answer.status, 404);
    assert.match(answer.body, /\/healthz, \/livez, \/readyz or \/metrics/);
  });

  test("methods other than GET and HEAD answer 405 with an Allow header", async () => {
    for (const method of ["POST", "PUT", "DELETE"]) {
      const answer = await call(server.address, "/healthz", method);
      assert.equal(answer.status, 405, method);
      assert.equal(answer.headers.allow, "GET, HEAD");
    }
  });
});

describe("startOpsServer lifecycle", () => {
  const options = {
    sources: {
      starting: () => false,
      health: () => HEALTHY,
      selfTest: () => true,
      serving: () => true,
    },
    metrics: new DaemonMetrics(),
    logger: createLogger("silent"),
  };

  test("an IPv6 loopback address is reported in brackets", async () => {
    const server = await startOpsServer({ ...options, host: "::1", port: 0 });
    try {
      assert.match(server.address, /^\[::1\]:\d+$/);
      assert.equal((await call(server.address, "/livez")).status, 200);
    } finally {
      await server.close();
    }
  });

  test("a port already in use rejects start-up with INVALID_CONFIG naming --http-address", async () => {
    const first = await startOpsServer({ ...options, host: "127.0.0.1", port: 0 });
    try {
      const port = Number(first.address.split(":").at(-1));
      await assert.rejects(startOpsServer({ ...options, host: "127.0.0.1", port }), {
        code: "INVALID_CONFIG",
        message: `--http-address: 127.0.0.1:${port} is already in use by another process (choose a free loopback port, or "off" to disable the probes)`,
      });
    } finally {
      await first.close();
    }
  });

  test("after close the port no longer answers", async () => {
    const server = await startOpsServer({ ...options, host: "127.0.0.1", port: 0 });
    assert.equal((await call(server.address, "/livez")).status, 200);
    await server.close();
    await assert.rejects(call(server.address, "/livez"), { code: "ECONNREFUSED" });
  });
});
