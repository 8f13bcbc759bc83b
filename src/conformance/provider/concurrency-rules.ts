import { Findings, type Rule } from "../report.js";
import { CONTEXT, errorClassOf, type ProviderRun, sameBytes, seen } from "./run.js";

export const concurrencyRule: Rule<ProviderRun> = {
  id: "provider.concurrency",
  title: "hundreds of parallel unwraps all return the right key",
  async check(run) {
    const findings = new Findings();
    const provider = await run.provider();
    const keys = [run.newKey(32), run.newKey(32), run.newKey(32), run.newKey(32)];
    const wrappedKeys: Uint8Array[] = [];
    for (const key of keys) {
      const wrap = await run.attempt(() => provider.wrapKey(key, CONTEXT));
      if (!wrap.ok) return findings.fail(`wrapKey ${seen(wrap)}`).outcome();
      wrappedKeys.push(wrap.value);
    }
    const started = performance.now();
    const results = await Promise.all(
      Array.from({ length: run.concurrency }, (_, index) =>
        run.attempt(() =>
          provider.unwrapKey(wrappedKeys[index % keys.length] as Uint8Array, CONTEXT),
        ),
      ),
    );
    const elapsed = Math.round(performance.now() - started);
    // Failures by class, with the first one's description as the example.
    const failures = new Map<string, { count: number; example: string }>();
    let wrong = 0;
    for (const [index, result] of results.entries()) {
      if (!result.ok) {
        const label = errorClassOf(result.error);
        const seenBefore = failures.get(label);
        if (seenBefore === undefined) failures.set(label, { count: 1, example: seen(result) });
        else seenBefore.count += 1;
      } else if (!sameBytes(result.value, keys[index % keys.length] as Uint8Array)) wrong += 1;
    }
    findings.note(
      `${run.concurrency} unwraps of ${keys.length} wrapped keys in flight at once took ${elapsed} ms`,
    );
    for (const [label, { count, example }] of failures) {
      findings.fail(`${count} unwraps failed as ${label}, e.g. ${example}`);
    }
    if (wrong > 0) findings.fail(`${wrong} unwraps returned the wrong key`);
    return findings.outcome();
  },
};
