import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, test } from "node:test";
import { FakeProvider } from "../../../providers/fake.js";
import { loadSecretbox } from "../../../src/crypto/secretbox.js";
import { HealthMonitor } from "../../../src/keys/health-monitor.js";
import { MasterKeySet } from "../../../src/keys/master-key-set.js";
import { SealingService } from "../../../src/keys/sealing-service.js";
import {
  checkHealthz,
  checkLivez,
  checkReadyz,
  type ProbeSources,
} from "../../../src/ops/probes.js";

await loadSecretbox();

const GRACE_MS = 60_000;

/** Probe sources wired as the daemon wires them: health monitor, envelope self-test, a flag. */
function daemonSources(): {
  sources: ProbeSources;
  fake: FakeProvider;
  monitor: HealthMonitor;
  clock: { advance(ms: number): void };
  setServing(serving: boolean): void;
} {
  let time = 1_000_000;
  let serving = false;
  const fake = new FakeProvider();
  const monitor = new HealthMonitor({
    check: (signal) => fake.checkHealth(signal),
    intervalMs: 60_000,
    gracePeriodMs: GRACE_MS,
    timeoutMs: 1_000,
    now: () => time,
  });
  const envelope = new SealingService({
    keys: MasterKeySet.of("fake", [randomBytes(32)]),
    kmsWorkspace: "kubernetes",
    health: monitor,
  });
  return {
    sources: {
      starting: () => false,
      health: () => monitor.snapshot(),
      selfTest: () => envelope.selfTest(),
      serving: () => serving,
    },
    fake,
    monitor,
    clock: {
      advance: (milliseconds) => {
        time += milliseconds;
      },
    },
    setServing: (value) => {
      serving = value;
    },
  };
}

describe("probes", () => {
  test("healthz is ok when the provider answered and the primary key passes its self-test", async () => {
    const { sources, monitor } = daemonSources();
    await monitor.checkNow();
    assert.deepEqual(checkHealthz(sources), { ok: true, reason: "ok" });
  });

  test("healthz fails while the provider is failing, naming the class and message", async () => {
    const { sources, fake, monitor } = daemonSources();
    fake.setStanding("user");
    await monitor.checkNow();
    assert.deepEqual(checkHealthz(sources), {
      ok: false,
      reason: "custody provider failing (user): fake: scripted user failure",
    });
  });

  test("healthz says suspended once the grace period has passed", async () => {
    const { sources, fake, monitor, clock } = daemonSources();
    fake.setStanding("throttled");
    await monitor.checkNow();
    clock.advance(GRACE_MS);
    assert.equal(checkHealthz(sources).ok, false);
    assert.match(checkHealthz(sources).reason, /^custody provider suspended \(throttled\)/);
  });

  test("healthz recovers when the provider comes back", async () => {
    const { sources, fake, monitor } = daemonSources();
    fake.script("user");
    await monitor.checkNow();
    assert.equal(checkHealthz(sources).ok, false);
    await monitor.checkNow();
    assert.equal(checkHealthz(sources).ok, true);
  });

  test("livez ignores user-caused and throttling provider failures, even when suspended", async () => {
    for (const errorClass of ["user", "throttled"] as const) {
      const { sources, fake, monitor, clock } = daemonSources();
      fake.setStanding(errorClass);
      await monitor.checkNow();
      assert.deepEqual(checkLivez(sources), { ok: true, reason: "ok" }, errorClass);
      clock.advance(GRACE_MS);
      assert.equal(sources.health().suspended, true);
      assert.deepEqual(checkLivez(sources), { ok: true, reason: "ok" }, errorClass);
    }
  });

  test("livez ignores transient corrupt or other failures, and fails once they outlast the grace period", async () => {
    for (const errorClass of ["corrupt", "other"] as const) {
      const { sources, fake, monitor, clock } = daemonSources();
      fake.setStanding(errorClass);
      await monitor.checkNow();
      assert.deepEqual(
        checkLivez(sources),
        { ok: true, reason: "ok" },
        `${errorClass} within the grace period`,
      );
      clock.advance(GRACE_MS);
      const result = checkLivez(sources);
      assert.equal(result.ok, false, errorClass);
      assert.match(
        result.reason,
        new RegExp(`custody provider failing past the grace period \\(${errorClass}\\)`),
      );
    }
  });

  test("a failed self-test fails healthz, livez and readyz", () => {
    const { sources, setServing } = daemonSources();
    setServing(true);
    const broken: ProbeSources = { ...sources, selfTest: () => false };
    const expected = { ok: false, reason: "primary master key failed its self-test" };
    assert.deepEqual(checkHealthz(broken), expected);
    assert.deepEqual(checkLivez(broken), expected);
    assert.deepEqual(checkReadyz(broken), expected);
  });

  test("readyz requires the socket to be serving", async () => {
    const { sources, monitor, setServing } = daemonSources();
    await monitor.checkNow();
    assert.deepEqual(checkReadyz(sources), {
      ok: false,
      reason: "gRPC socket is not serving yet",
    });
    setServing(true);
    assert.deepEqual(checkReadyz(sources), { ok: true, reason: "ok" });
  });

  test("readyz also requires healthz: serving with a failing provider is not ready", async () => {
    const { sources, fake, monitor, setServing } = daemonSources();
    setServing(true);
    fake.setStanding("other");
    await monitor.checkNow();
    assert.equal(checkReadyz(sources).ok, false);
    assert.match(checkReadyz(sources).reason, /custody provider failing \(other\)/);
  });

  test("probes read cached state only: they never call the provider", async () => {
    const { sources, fake, monitor, setServing } = daemonSources();
    setServing(true);
    await monitor.checkNow();
    for (let index = 0; index < 10; index += 1) {
      checkHealthz(sources);
      checkLivez(sources);
      checkReadyz(sources);
    }
    assert.equal(fake.calls.checkHealth, 1);
  });
});
