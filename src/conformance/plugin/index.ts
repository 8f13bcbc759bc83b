import {
  buildReport,
  type ConformanceReport,
  type Rule,
  type RuleOutcome,
  type RuleResult,
  runRule,
  skipped,
} from "../report.js";
import { DECRYPT_RULES } from "./decrypt-rules.js";
import { ENCRYPT_RULES } from "./encrypt-rules.js";
import { LOAD_RULES } from "./load-rules.js";
import { ROUND_TRIP_RULES } from "./round-trip-rules.js";
import { PluginRun, type PluginRunOptions } from "./run.js";
import { STATUS_RULES } from "./status-rules.js";
import { V1_RULES } from "./v1-rules.js";

export { percentile } from "./load-rules.js";
export { PluginRun, type PluginRunOptions } from "./run.js";

/** The Kubernetes KMS contract (KMS-CONTRACT.md §1-2), in the order the rules run. */
const PLUGIN_RULES: readonly Rule<PluginRun>[] = [
  ...STATUS_RULES,
  ...ENCRYPT_RULES,
  ...ROUND_TRIP_RULES,
  ...LOAD_RULES,
  ...V1_RULES,
  ...DECRYPT_RULES,
];

/**
 * Runs the contract against one plugin socket. When Status does not answer at all, the rules
 * after it are skipped: there is nothing to judge, and one failure says why.
 */
export async function runPluginConformance(options: PluginRunOptions): Promise<ConformanceReport> {
  const startedAt = new Date();
  const run = new PluginRun(options);
  const results: RuleResult[] = [];
  try {
    for (const rule of PLUGIN_RULES) {
      const unreachable = results[0]?.id === "status.answers" && results[0].status === "fail";
      results.push(
        unreachable
          ? { id: rule.id, title: rule.title, ...unreachableOutcome(), durationMs: 0 }
          : await runRule(rule, run),
      );
    }
  } finally {
    run.close();
  }
  return buildReport("plugin", options.endpoint, startedAt, results);
}

function unreachableOutcome(): RuleOutcome {
  return skipped("the plugin did not answer Status (see status.answers)");
}
