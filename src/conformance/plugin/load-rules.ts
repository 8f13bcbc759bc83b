import { randomBytes } from "node:crypto";
import { Findings, type Rule, skipped } from "../report.js";
import { type PluginRun, SEED_BYTES } from "./run.js";

/** Nearest-rank percentile of sorted samples. */
export function percentile(sorted: readonly number[], fraction: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(fraction * sorted.length)));
  return sorted[rank - 1] as number;
}

export const LOAD_RULES: readonly Rule<PluginRun>[] = [
  {
    id: "concurrency",
    title: "concurrent Encrypt→Decrypt round trips all succeed",
    async check(run) {
      const findings = new Findings();
      const started = performance.now();
      const outcomes = await Promise.all(
        Array.from({ length: run.concurrency }, async () => {
          const seed = randomBytes(SEED_BYTES);
          const encrypted = await run.encrypt(seed);
          if (!encrypted.ok) return `Encrypt ${encrypted.codeName}`;
          const decrypted = await run.decrypt(encrypted.value);
          if (!decrypted.ok) return `Decrypt ${decrypted.codeName}`;
          return decrypted.value.equals(seed) ? "ok" : "wrong plaintext";
        }),
      );
      const counts = new Map<string, number>();
      for (const outcome of outcomes) counts.set(outcome, (counts.get(outcome) ?? 0) + 1);
      findings.note(
        `${run.concurrency} round trips in flight at once took ${Math.round(performance.now() - started)} ms`,
      );
      for (const [outcome, count] of counts) {
        if (outcome !== "ok") findings.fail(`${count} round trips: ${outcome}`);
      }
      return findings.outcome();
    },
  },
  {
    id: "latency",
    title:
      "Status, Encrypt and Decrypt latency percentiles (warn when p99 exceeds a third of the timeout)",
    async check(run) {
      const findings = new Findings();
      const first = await run.firstEncrypt();
      if (!first.result.ok) return skipped("no Encrypt answer (see encrypt.answers)");
      const samples: Record<string, number[]> = { Status: [], Encrypt: [], Decrypt: [] };
      let failures = 0;
      for (let index = 0; index < run.latencySamples; index += 1) {
        const results = [
          ["Status", await run.status()],
          ["Encrypt", await run.encrypt()],
          ["Decrypt", await run.decrypt(first.result.value)],
        ] as const;
        for (const [method, result] of results) {
          if (result.ok) samples[method]?.push(result.ms);
          else failures += 1;
        }
      }
      if (failures > 0)
        findings.fail(`${failures} of ${run.latencySamples * 3} sequential calls failed`);
      const budget = run.timeoutMs / 3;
      for (const [method, values] of Object.entries(samples)) {
        const sorted = [...values].sort((a, b) => a - b);
        const [p50, p95, p99] = [0.5, 0.95, 0.99].map((fraction) => percentile(sorted, fraction));
        const line = `${method}: p50 ${p50} ms, p95 ${p95} ms, p99 ${p99} ms over ${sorted.length} calls`;
        if ((p99 ?? 0) > budget)
          findings.warn(
            `${line}: p99 above ${Math.round(budget)} ms leaves little of the ${run.timeoutMs} ms timeout`,
          );
        else findings.note(line);
      }
      return findings.outcome();
    },
  },
];
