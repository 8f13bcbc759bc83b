import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { FakeProvider } from "../../../providers/fake.js";
import { ProviderError } from "../../../providers/types.js";
import {
  HealthMonitor,
  type HealthMonitorOptions,
  type HealthSnapshot,
} from "../../../src/keys/health-monitor.js";

const GRACE_MS = 5_000;

/** A clock tests move by hand. */
function manualClock(start = 1_000_000): { now: () => number; advance: (ms: number) => void } {
  let time = start;
  return {
    now: () => time,
    advance: (milliseconds) => {
      time += milliseconds;
    },
  };
}

function monitorFor(
  fake: FakeProvider,
  options: Partial<HealthMonitorOptions> = {},
): HealthMonitor {
  return new HealthMonitor({
    check: (signal) => fake.checkHealth(signal),
    intervalMs: 60_000,
    gracePeriodMs: GRACE_MS,
    timeoutMs: 1_000,
    ...options,
  });
}

describe("HealthMonitor", () => {
  test("before the first check the snapshot is healthy, not suspended, checkedAt 0", () => {
    const fake = new FakeProvider();
    const monitor = monitorFor(fake);
    assert.deepEqual(monitor.snapshot(), { healthy: true, suspended: false, checkedAt: 0 });
    assert.equal(fake.calls.checkHealth, 0, "reading the snapshot costs no provider call");
  });

  test("a successful check is healthy and stamped with the injected clock", async () => {
    const clock = manualClock();
    const fake = new FakeProvider();
    const monitor = monitorFor(fake, { now: clock.now });
    const snapshot = await monitor.checkNow();
    assert.deepEqual(snapshot, { healthy: true, suspended: false, checkedAt: clock.now() });
    assert.equal(fake.calls.checkHealth, 1);
  });

  test("a failing provider is unhealthy at once but suspended only after the grace period", async () => {
    const clock = manualClock();
    const started = clock.now();
    const fake = new FakeProvider().setStanding("user");
    const monitor = monitorFor(fake, { now: clock.now });

    const first = await monitor.checkNow();
    assert.equal(first.healthy, false);
    assert.equal(first.suspended, false);
    assert.equal(first.errorClass, "user");
    assert.equal(first.message, "fake: scripted user failure");
    assert.equal(first.failingSince, started);

    clock.advance(GRACE_MS - 1);
    assert.equal(monitor.snapshot().suspended, false, "one millisecond before the grace ends");
    clock.advance(1);
    assert.equal(monitor.snapshot().suspended, true, "suspension is re-evaluated on read");
    assert.equal(fake.calls.checkHealth, 1, "snapshot() never calls the provider");

    clock.advance(1_000);
    const later = await monitor.checkNow();
    assert.equal(later.suspended, true);
    assert.equal(later.failingSince, started, "failingSince marks the start of the run");
    assert.equal(later.checkedAt, clock.now());
  });

  test("a grace period of zero suspends on the first failure", async () => {
    const fake = new FakeProvider().setStanding("user");
    const monitor = monitorFor(fake, { gracePeriodMs: 0, now: manualClock().now });
    assert.equal((await monitor.checkNow()).suspended, true);
  });

  test("recovery: a successful check clears unhealthy and suspended state", async () => {
    const clock = manualClock();
    const fake = new FakeProvider().setStanding("user");
    const monitor = monitorFor(fake, { now: clock.now });
    await monitor.checkNow();
    clock.advance(GRACE_MS * 2);
    assert.equal(monitor.snapshot().suspended, true);

    fake.setStanding("ok");
    const recovered = await monitor.checkNow();
    assert.deepEqual(recovered, { healthy: true, suspended: false, checkedAt: clock.now() });
    assert.deepEqual(monitor.snapshot(), recovered);
  });

  test("after recovery a new failure starts a new grace period", async () => {
    const clock = manualClock();
    const fake = new FakeProvider().script("throttled", "ok", "throttled");
    const monitor = monitorFor(fake, { now: clock.now });
    await monitor.checkNow();
    clock.advance(GRACE_MS - 1);
    await monitor.checkNow();
    clock.advance(GRACE_MS - 1);
    const failing = await monitor.checkNow();
    assert.equal(failing.failingSince, clock.now());
    assert.equal(failing.suspended, false);
  });

  test("concurrent checkNow() calls share one provider call and one result", async () => {
    const fake = new FakeProvider().setDelay(30);
    const monitor = monitorFor(fake);
    const results = await Promise.all([monitor.checkNow(), monitor.checkNow(), monitor.checkNow()]);
    assert.equal(fake.calls.checkHealth, 1);
    assert.equal(results[1], results[0]);
    assert.equal(results[2], results[0]);

    await monitor.checkNow();
    assert.equal(fake.calls.checkHealth, 2, "a call after the shared one finishes checks again");
  });

  test("a check that exceeds timeoutMs is aborted and classified as other", async () => {
    const fake = new FakeProvider().setDelay(60_000);
    const monitor = monitorFor(fake, { timeoutMs: 30 });
    const started = Date.now();
    const snapshot = await monitor.checkNow();
    assert.ok(Date.now() - started < 5_000, "the check ends at its deadline");
    assert.equal(snapshot.healthy, false);
    assert.equal(snapshot.errorClass, "other");
  });

  test("a check that ignores the abort signal still ends at timeoutMs, classified as other", {
    timeout: 5_000,
  }, async () => {
    let aborted = false;
    const monitor = new HealthMonitor({
      check: (signal) => {
        signal.addEventListener("abort", () => {
          aborted = true;
        });
        return new Promise<void>(() => {});
      },
      intervalMs: 60_000,
      gracePeriodMs: GRACE_MS,
      timeoutMs: 30,
    });
    const snapshot = await monitor.checkNow();
    assert.equal(aborted, true, "the signal given to the check was aborted");
    assert.equal(snapshot.healthy, false);
    assert.equal(snapshot.errorClass, "other");
    assert.match(snapshot.message ?? "", /timed out/);
  });

  test("a non-ProviderError thrown by check is classified other with a generic message", async () => {
    const monitor = new HealthMonitor({
      check: async () => {
        throw new TypeError("socket hang up; token=abc123");
      },
      intervalMs: 60_000,
      gracePeriodMs: GRACE_MS,
      timeoutMs: 1_000,
    });
    const snapshot = await monitor.checkNow();
    assert.equal(snapshot.healthy, false);
    assert.equal(snapshot.errorClass, "other");
    assert.equal(snapshot.message, "provider health check failed");
  });

  test("a thrown non-Error value is classified other too", async () => {
    const monitor = new HealthMonitor({
      check: () => Promise.reject("plain string"),
      intervalMs: 60_000,
      gracePeriodMs: GRACE_MS,
      timeoutMs: 1_000,
    });
    assert.equal((await monitor.checkNow()).errorClass, "other");
  });

  test("a ProviderError keeps its class and message", async () => {
    for (const errorClass of ["user", "throttled", "corrupt", "other"] as const) {
      const monitor = new HealthMonitor({
        check: () => Promise.reject(new ProviderError(errorClass, `key ${errorClass}`)),
        intervalMs: 60_000,
        gracePeriodMs: GRACE_MS,
        timeoutMs: 1_000,
      });
      const snapshot = await monitor.checkNow();
      assert.equal(snapshot.errorClass, errorClass);
      assert.equal(snapshot.message, `key ${errorClass}`);
    }
  });

  test("onCheck reports changed only when health, suspension or error class changes", async () => {
    const clock = manualClock();
    const fake = new FakeProvider().script(
      "ok", // first check: always a change
      "ok", // same
      "throttled", // healthy -> unhealthy
      "throttled", // same class
      "user", // class changed
      "user", // same
      "user", // grace period crossed: suspended
      "user", // same
      "ok", // recovered
    );
    const seen: { snapshot: HealthSnapshot; changed: boolean }[] = [];
    const monitor = monitorFor(fake, {
      now: clock.now,
      onCheck: (snapshot, changed) => seen.push({ snapshot, changed }),
    });
    for (let step = 0; step < 9; step += 1) {
      if (step === 6) clock.advance(GRACE_MS);
      await monitor.checkNow();
    }
    assert.deepEqual(
      seen.map((entry) => entry.changed),
      [true, false, true, false, true, false, true, false, true],
    );
    assert.deepEqual(
      seen.map((entry) => entry.snapshot.suspended),
      [false, false, false, false, false, false, true, true, false],
    );
  });

  test("onCheck receives the same snapshot checkNow resolves with", async () => {
    let reported: HealthSnapshot | undefined;
    const monitor = monitorFor(new FakeProvider(), {
      onCheck: (snapshot) => {
        reported = snapshot;
      },
    });
    assert.equal(await monitor.checkNow(), reported);
  });

  test("start() runs the first check, then checks every interval until stop()", async () => {
    const fake = new FakeProvider();
    const monitor = monitorFor(fake, { intervalMs: 10 });
    try {
      const first = await monitor.start();
      assert.equal(first.healthy, true);
      assert.equal(fake.calls.checkHealth, 1);
      await sleep(80);
      assert.ok(fake.calls.checkHealth >= 3, `interval checks ran (${fake.calls.checkHealth})`);
    } finally {
      monitor.stop();
    }
    await sleep(20);
    const stopped = fake.calls.checkHealth;
    await sleep(60);
    assert.equal(fake.calls.checkHealth, stopped, "no checks after stop()");
  });

  test("start() reports a failing first check instead of throwing", async () => {
    const fake = new FakeProvider().script("user");
    const monitor = monitorFor(fake);
    try {
      const first = await monitor.start();
      assert.equal(first.healthy, false);
      assert.equal(first.errorClass, "user");
    } finally {
      monitor.stop();
    }
  });
});
