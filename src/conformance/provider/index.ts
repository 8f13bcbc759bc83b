import {
  buildReport,
  type ConformanceReport,
  type Rule,
  type RuleResult,
  runRule,
} from "../report.js";
import { captureOutput } from "../secret-scan.js";
import { BINDING_RULES } from "./binding-rules.js";
import { concurrencyRule } from "./concurrency-rules.js";
import { closeRule, describeRule, noSecretsRule } from "./contract-rules.js";
import { HEALTH_RULES } from "./health-rules.js";
import { ROUND_TRIP_RULES } from "./round-trip-rules.js";
import { ProviderRun, type ProviderRunOptions, type ProviderSubject } from "./run.js";

export {
  type Attempt,
  errorClassOf,
  type ProviderFaults,
  ProviderRun,
  type ProviderRunOptions,
  type ProviderSubject,
} from "./run.js";

/** The provider contract (providers/types.ts, SPEC.md §3), in the order the rules run. */
export const PROVIDER_RULES: readonly Rule<ProviderRun>[] = [
  describeRule,
  ...ROUND_TRIP_RULES,
  ...BINDING_RULES,
  ...HEALTH_RULES,
  concurrencyRule,
  closeRule,
  // Last: it searches every error and output write of the run for key material.
  noSecretsRule,
];

/** Runs one rule against a run's subject, capturing output for the no-secret rule. */
export function runProviderRule(rule: Rule<ProviderRun>, run: ProviderRun): Promise<RuleResult> {
  return captureOutput(() => runRule(rule, run), run.output);
}

/** Runs every provider rule against one subject and reports. */
export async function runProviderConformance(
  subject: ProviderSubject,
  options: ProviderRunOptions = {},
): Promise<ConformanceReport> {
  const startedAt = new Date();
  const run = new ProviderRun(subject, options);
  const results: RuleResult[] = [];
  try {
    for (const rule of PROVIDER_RULES) {
      results.push(await runProviderRule(rule, run));
    }
  } finally {
    await run.close();
  }
  return buildReport("provider", subject.label, startedAt, results);
}
