/**
 * The shape both conformance suites report in (plugin and provider): one result per rule with
 * the evidence that decided it, a readable text form for people and a JSON form for CI.
 */

/** pass: the rule holds; fail: it is broken; warn: legal but worth a look; skip: not checkable. */
type RuleStatus = "pass" | "fail" | "warn" | "skip";

/** What one rule found. Evidence is public: lengths, codes, timings, never key material. */
export interface RuleResult {
  /** Stable identifier, e.g. `status.version` or `provider.tamper`. */
  id: string;
  /** What the rule demands, in one line. */
  title: string;
  status: RuleStatus;
  /** What was seen, one fact per entry. */
  evidence: string[];
  durationMs: number;
}

/** A whole run against one plugin endpoint or one custody provider. */
export interface ConformanceReport {
  suite: "plugin" | "provider";
  /** The endpoint or provider under test. */
  target: string;
  startedAt: string;
  durationMs: number;
  /** Counts by status. */
  summary: Record<RuleStatus, number>;
  /** True when no rule failed (warnings and skips do not fail a run). */
  conforms: boolean;
  results: RuleResult[];
}

/** What a rule's check returns: its verdict and the evidence for it. */
export interface RuleOutcome {
  status: RuleStatus;
  evidence: string[];
}

/** One rule: an id, what it demands, and the check. */
export interface Rule<Context> {
  id: string;
  title: string;
  check(context: Context): Promise<RuleOutcome>;
}

/**
 * Collects findings while a rule runs: each `fail` or `warn` records evidence and lowers the
 * verdict; `note` records evidence only. The verdict is the worst status seen.
 */
export class Findings {
  readonly evidence: string[] = [];
  #status: RuleStatus = "pass";

  /** Records a fact that supports the verdict without changing it. */
  note(fact: string): this {
    this.evidence.push(fact);
    return this;
  }

  /** Records a violation: the rule fails. */
  fail(fact: string): this {
    this.evidence.push(`FAIL: ${fact}`);
    this.#status = "fail";
    return this;
  }

  /** Records something legal but questionable: the rule warns unless it already fails. */
  warn(fact: string): this {
    this.evidence.push(`WARN: ${fact}`);
    if (this.#status !== "fail") this.#status = "warn";
    return this;
  }

  /** Fails with `fact` unless `condition` holds; notes `fact` otherwise. */
  expect(condition: boolean, fact: string): boolean {
    if (condition) this.note(fact);
    else this.fail(fact);
    return condition;
  }

  outcome(): RuleOutcome {
    return { status: this.#status, evidence: this.evidence };
  }
}

/** A rule that cannot be checked here, with the reason. */
export function skipped(reason: string): RuleOutcome {
  return { status: "skip", evidence: [reason] };
}

/**
 * Runs one rule. A check that throws is a failure of the rule (the thrown error is the
 * evidence), so one broken rule never stops the run.
 */
export async function runRule<Context>(rule: Rule<Context>, context: Context): Promise<RuleResult> {
  const started = performance.now();
  let outcome: RuleOutcome;
  try {
    outcome = await rule.check(context);
  } catch (error) {
    outcome = { status: "fail", evidence: [`FAIL: the check stopped: ${describeThrown(error)}`] };
  }
  return {
    id: rule.id,
    title: rule.title,
    status: outcome.status,
    evidence: outcome.evidence,
    durationMs: Math.round(performance.now() - started),
  };
}

/** Assembles a report from the results of a run. */
export function buildReport(
  suite: ConformanceReport["suite"],
  target: string,
  startedAt: Date,
  results: RuleResult[],
): ConformanceReport {
  const summary: Record<RuleStatus, number> = { pass: 0, fail: 0, warn: 0, skip: 0 };
  for (const result of results) summary[result.status] += 1;
  return {
    suite,
    target,
    startedAt: startedAt.toISOString(),
    durationMs: Date.now() - startedAt.getTime(),
    summary,
    conforms: summary.fail === 0,
    results,
  };
}

const LABELS: Record<RuleStatus, string> = {
  pass: "PASS",
  fail: "FAIL",
  warn: "WARN",
  skip: "SKIP",
};

/** The readable report: one line per rule, its evidence indented below, a summary last. */
export function formatReport(report: ConformanceReport): string {
  const lines = [`${report.suite} conformance: ${report.target}`, ""];
  for (const result of report.results) {
    lines.push(`${LABELS[result.status]}  ${result.id}  ${result.title} (${result.durationMs} ms)`);
    for (const fact of result.evidence) lines.push(`        ${fact}`);
  }
  const { pass, fail, warn, skip } = report.summary;
  lines.push(
    "",
    `${pass} passed, ${fail} failed, ${warn} warnings, ${skip} skipped in ${report.durationMs} ms: ${
      report.conforms ? "conforms" : "DOES NOT CONFORM"
    }`,
  );
  return `${lines.join("\n")}\n`;
}

/** One line for a thrown value: its name, code and message, bounded. */
export function describeThrown(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    const label = code === undefined ? error.name : `${error.name} ${String(code)}`;
    return `${label}: ${error.message.slice(0, 300)}`;
  }
  return String(error).slice(0, 300);
}
