import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import {
  PROVIDER_RULES,
  ProviderRun,
  type ProviderSubject,
  runProviderRule,
} from "../../src/conformance/provider/index.js";

/**
 * Registers the provider conformance suite for one subject: one node:test test per rule, in
 * rule order, sharing one run. A failing rule's message names the subject, the rule and what
 * was seen; warnings are printed as diagnostics and do not fail.
 */
export function providerConformance(
  name: string,
  subject: () => Promise<ProviderSubject>,
  options: { concurrency?: number } = {},
): void {
  describe(`provider conformance: ${name}`, () => {
    let run: ProviderRun | undefined;
    before(async () => {
      run = new ProviderRun(await subject(), options);
    });
    after(async () => {
      await run?.close();
    });
    for (const rule of PROVIDER_RULES) {
      test(rule.id, async (context) => {
        assert.ok(run !== undefined, `the ${name} subject could not be set up`);
        const result = await runProviderRule(rule, run);
        const evidence = result.evidence.map((fact) => `  - ${fact}`).join("\n");
        if (result.status === "skip") context.skip(result.evidence.join("; "));
        if (result.status === "warn") context.diagnostic(`warning: ${result.evidence.join("; ")}`);
        assert.ok(
          result.status !== "fail",
          `${run.subject.label} breaks rule ${rule.id} (${rule.title}):\n${evidence}`,
        );
      });
    }
  });
}
