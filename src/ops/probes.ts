import type { HealthSnapshot } from "../keys/health-monitor.js";

/** What the probes read; every source is in-memory, so a probe never calls the provider. */
export interface ProbeSources {
  /** True until the master keys are loaded; health() is only read once this is false. */
  starting(): boolean;
  health(): HealthSnapshot;
  selfTest(): boolean;
  serving(): boolean;
}

/** Outcome of one probe: pass or fail, with a one-line reason for operators. */
export interface ProbeResult {
  ok: boolean;
  reason: string;
}

/**
 * Deep health: the custody provider answered its last check and the primary key seals and
 * opens in memory. This is what Status.healthz reports to the apiserver.
 */
export function checkHealthz(sources: ProbeSources): ProbeResult {
  if (sources.starting()) return { ok: false, reason: "starting: master keys not loaded yet" };
  const health = sources.health();
  if (!health.healthy) {
    const state = health.suspended ? "suspended" : "failing";
    return {
      ok: false,
      reason: `custody provider ${state} (${health.errorClass}): ${health.message}`,
    };
  }
  if (!sources.selfTest()) return { ok: false, reason: "primary master key failed its self-test" };
  return { ok: true, reason: "ok" };
}

/**
 * Liveness ignores user-caused and throttling provider failures (SPEC.md §6): restarting the
 * daemon cannot re-enable a revoked key or lift a quota, and restart loops take the apiserver
 * with them (kubernetes#93968). Transient outages inside the grace period are ignored too
 * (issue 3); only corrupt answers or an outage that outlasts the grace period — which a fresh
 * process and client may cure — or a broken key in memory fail it.
 */
export function checkLivez(sources: ProbeSources): ProbeResult {
  // A slow custody provider at start-up is not a reason to restart the process.
  if (sources.starting()) return { ok: true, reason: "starting" };
  if (!sources.selfTest()) return { ok: false, reason: "primary master key failed its self-test" };
  const health = sources.health();
  const restartMayHelp = health.errorClass === "corrupt" || health.errorClass === "other";
  if (!health.healthy && health.suspended && restartMayHelp) {
    return {
      ok: false,
      reason: `custody provider failing past the grace period (${health.errorClass}): ${health.message}`,
    };
  }
  return { ok: true, reason: "ok" };
}

/** Readiness: the socket is serving and the daemon would encrypt right now. */
export function checkReadyz(sources: ProbeSources): ProbeResult {
  if (!sources.serving()) return { ok: false, reason: "gRPC socket is not serving yet" };
  return checkHealthz(sources);
}
