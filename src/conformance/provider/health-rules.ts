import { ProviderError, type ProviderErrorClass } from "../../../providers/types.js";
import { Findings, type Rule, skipped } from "../report.js";
import { CONTEXT, errorClassOf, type ProviderRun, seen, wrapped } from "./run.js";

// A fault rule: checkHealth (and an unwrap) under the fault, then recovery after restore.
function faultRule(
  id: string,
  title: string,
  fault: "throttle" | "outage" | "revoke",
  expected: ProviderErrorClass,
): Rule<ProviderRun> {
  return {
    id,
    title,
    async check(run) {
      const apply = run.subject.faults?.[fault];
      if (apply === undefined || run.subject.faults === undefined) {
        return skipped(
          `the key service behind ${run.subject.label} cannot simulate ${fault === "outage" ? "an outage" : fault === "throttle" ? "throttling" : "revocation"}`,
        );
      }
      const findings = new Findings();
      const setup = await wrapped(run, findings);
      if (setup === undefined) return findings.outcome();
      await apply.call(run.subject.faults);
      try {
        const health = await run.attempt(() => setup.provider.checkHealth());
        if (health.ok) findings.fail(`checkHealth under ${fault} succeeded`);
        else
          findings.expect(
            errorClassOf(health.error) === expected,
            `checkHealth under ${fault} ${seen(health)} (expected ${expected})`,
          );
        const unwrap = await run.attempt(() => setup.provider.unwrapKey(setup.wrapped, CONTEXT));
        if (unwrap.ok) findings.fail(`unwrapKey under ${fault} succeeded`);
        else
          findings.expect(
            errorClassOf(unwrap.error) === expected,
            `unwrapKey under ${fault} ${seen(unwrap)} (expected ${expected})`,
          );
      } finally {
        await run.subject.faults.restore();
      }
      const recovered = await run.attempt(() => setup.provider.checkHealth());
      findings.expect(recovered.ok, `checkHealth after the ${fault} ended ${seen(recovered)}`);
      return findings.outcome();
    },
  };
}

export const HEALTH_RULES: readonly Rule<ProviderRun>[] = [
  {
    id: "provider.health",
    title: "checkHealth resolves while the key service is healthy",
    async check(run) {
      const findings = new Findings();
      const provider = await run.provider();
      for (let index = 1; index <= 3; index += 1) {
        const health = await run.attempt(() => provider.checkHealth());
        findings.expect(health.ok, `checkHealth ${index} ${seen(health)}`);
      }
      return findings.outcome();
    },
  },
  faultRule(
    "provider.health-throttled",
    "throttling is reported as throttled, then recovers",
    "throttle",
    "throttled",
  ),
  faultRule(
    "provider.health-outage",
    "an outage is reported as other, then recovers",
    "outage",
    "other",
  ),
  faultRule(
    "provider.health-revoked",
    "revocation is reported as user, then recovers",
    "revoke",
    "user",
  ),
  {
    id: "provider.timeout",
    title: "a call to a stalled key service fails as other within the configured deadline",
    async check(run) {
      const { faults, timeoutMs } = run.subject;
      if (faults?.delay === undefined || timeoutMs === undefined)
        return skipped(`the key service behind ${run.subject.label} cannot be stalled`);
      const findings = new Findings();
      const setup = await wrapped(run, findings);
      if (setup === undefined) return findings.outcome();
      const slack = Math.max(1000, timeoutMs / 2);
      // Longer than deadline plus slack, so a provider that waits it out is told apart.
      const stallMs = timeoutMs + slack + 500;
      await faults.delay(stallMs);
      try {
        const unwrap = await run.attempt(() => setup.provider.unwrapKey(setup.wrapped, CONTEXT));
        if (unwrap.ok)
          findings.fail(
            `unwrapKey succeeded after ${unwrap.ms} ms although the service was stalled for ${stallMs} ms`,
          );
        else {
          findings.expect(
            unwrap.ms <= timeoutMs + slack,
            `unwrapKey gave up after ${unwrap.ms} ms (deadline ${timeoutMs} ms, ${slack} ms slack)`,
          );
          findings.expect(
            errorClassOf(unwrap.error) === "other",
            `unwrapKey ${seen(unwrap)} (expected other)`,
          );
        }
      } finally {
        await faults.restore();
      }
      return findings.outcome();
    },
  },
  {
    id: "provider.abort",
    title: "a call whose caller gives up (AbortSignal) ends promptly",
    async check(run) {
      const { faults } = run.subject;
      if (faults?.delay === undefined)
        return skipped(`the key service behind ${run.subject.label} cannot be stalled`);
      const findings = new Findings();
      const setup = await wrapped(run, findings);
      if (setup === undefined) return findings.outcome();
      const abortAfterMs = 200;
      const slack = 1000;
      await faults.delay(abortAfterMs + slack + 500);
      try {
        const signal = AbortSignal.timeout(abortAfterMs);
        const unwrap = await run.attempt(() =>
          setup.provider.unwrapKey(setup.wrapped, CONTEXT, signal),
        );
        if (unwrap.ok)
          findings.fail(
            `unwrapKey succeeded after ${unwrap.ms} ms although the caller gave up at ${abortAfterMs} ms`,
          );
        else {
          findings.expect(
            unwrap.ms <= abortAfterMs + slack,
            `unwrapKey ended ${unwrap.ms} ms after the call (caller gave up at ${abortAfterMs} ms)`,
          );
          findings.expect(unwrap.error instanceof ProviderError, `unwrapKey ${seen(unwrap)}`);
        }
      } finally {
        await faults.restore();
      }
      return findings.outcome();
    },
  },
];
