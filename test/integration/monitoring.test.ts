import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { before, describe, test } from "node:test";
import { parse } from "yaml";
import { PACKAGE_ROOT } from "../../src/package-info.js";
import { call, callError, suiteDaemon } from "../support/daemon-process.js";
import { metricNames, seriesShape } from "../support/promql-names.js";

// The alerting rules, their promtool tests and the Grafana dashboard, checked with the real
// promtool and against the metric names a real daemon exports after real traffic.

const RULES = join(PACKAGE_ROOT, "deploy/prometheus/kms-envelope.rules.yaml");
const RULES_TEST = join(PACKAGE_ROOT, "deploy/prometheus/kms-envelope.rules.test.yaml");
const DASHBOARD = join(PACKAGE_ROOT, "deploy/grafana/kms-envelope.dashboard.json");
// biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana's variable syntax, not a template.
const DATASOURCE_VARIABLE = "${datasource}";
// Prometheus writes `up` for every target itself; no exporter has it.
const PER_TARGET = new Set(["up"]);

interface Rule {
  record?: string;
  alert?: string;
  expr: string;
}
interface RuleTest {
  name: string;
  input_series: { series: string }[];
  alert_rule_test?: { alertname: string; exp_alerts: unknown[] }[];
  promql_expr_test?: { expr: string }[];
}
interface Target {
  expr?: string;
  refId?: string;
  datasource?: { uid?: string };
}
interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: { type?: string; uid?: string };
  targets?: Target[];
  panels?: Panel[];
}
interface Dashboard {
  panels: Panel[];
  templating: { list: { name: string; type: string; query: unknown }[] };
}

const rules = (
  parse(readFileSync(RULES, "utf8")) as { groups: { rules: Rule[] }[] }
).groups.flatMap((group) => group.rules);
const ruleTests = (parse(readFileSync(RULES_TEST, "utf8")) as { tests: RuleTest[] }).tests;
const dashboard = JSON.parse(readFileSync(DASHBOARD, "utf8")) as Dashboard;
const recorded = new Set(rules.flatMap((rule) => (rule.record ? [rule.record] : [])));

function promtool(...args: string[]): { status: number | null; output: string } {
  const run = spawnSync("promtool", args, { encoding: "utf8" });
  if (run.error !== undefined)
    assert.fail(
      `promtool did not run (${run.error.message}): run scripts/install-system-packages.sh`,
    );
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

/** Every panel, those inside collapsed rows included. */
function allPanels(panels: Panel[]): Panel[] {
  return panels.flatMap((panel) => [panel, ...allPanels(panel.panels ?? [])]);
}

/** Grafana's interval variables become durations so promtool can parse the expression. */
function withoutGrafanaVariables(expr: string): string {
  return expr.replace(/\$__(?:rate_interval|interval|range)\b/g, "5m");
}

/** The selector of each `label_values(selector, label)` variable query. */
function variableSelectors(): string[] {
  return dashboard.templating.list.flatMap((variable) => {
    const query =
      typeof variable.query === "string"
        ? variable.query
        : ((variable.query as { query?: string } | undefined)?.query ?? "");
    const match = /^label_values\((.+),\s*\w+\)$/.exec(query);
    return match?.[1] === undefined ? [] : [match[1]];
  });
}

function dashboardExpressions(): string[] {
  return allPanels(dashboard.panels)
    .flatMap((panel) => panel.targets ?? [])
    .flatMap((target) => (target.expr === undefined ? [] : [withoutGrafanaVariables(target.expr)]))
    .concat(variableSelectors());
}

describe("alerting and recording rules (promtool)", () => {
  test("promtool check rules accepts the rules file", () => {
    const run = promtool("check", "rules", RULES);
    assert.equal(run.status, 0, run.output);
    assert.match(run.output, new RegExp(`SUCCESS: ${rules.length} rules found`));
  });

  test("promtool test rules passes", () => {
    const run = promtool("test", "rules", RULES_TEST);
    assert.equal(run.status, 0, run.output);
  });

  test("every alert is tested both firing and not firing", () => {
    const cases = ruleTests.flatMap((ruleTest) => ruleTest.alert_rule_test ?? []);
    const missing = rules
      .flatMap((rule) => (rule.alert ? [rule.alert] : []))
      .flatMap((alert) => {
        const mine = cases.filter((entry) => entry.alertname === alert);
        return [
          ...(mine.some((entry) => entry.exp_alerts.length > 0) ? [] : [`${alert} firing`]),
          ...(mine.some((entry) => entry.exp_alerts.length === 0) ? [] : [`${alert} not firing`]),
        ];
      });
    assert.deepEqual(missing, []);
  });
});

describe("Grafana dashboard lint", () => {
  const panels = allPanels(dashboard.panels);

  test("has a datasource template variable every panel and query uses", () => {
    const variable = dashboard.templating.list.find((entry) => entry.name === "datasource");
    assert.equal(variable?.type, "datasource");
    assert.equal(variable?.query, "prometheus");
    const wrong = panels
      .filter((panel) => panel.type !== "row")
      .flatMap((panel) => [
        ...(panel.datasource?.uid === DATASOURCE_VARIABLE
          ? []
          : [`${panel.title}: panel datasource`]),
        ...(panel.targets ?? [])
          .filter((target) => target.datasource?.uid !== DATASOURCE_VARIABLE)
          .map((target) => `${panel.title} ${target.refId}: query datasource`),
      ]);
    assert.deepEqual(wrong, []);
  });

  test("every panel but rows has queries, each with an expression and its own refId", () => {
    const wrong = panels
      .filter((panel) => panel.type !== "row")
      .flatMap((panel) => {
        const targets = panel.targets ?? [];
        const refIds = targets.map((target) => target.refId);
        return [
          ...(targets.length > 0 ? [] : [`${panel.title}: no queries`]),
          ...targets
            .filter((target) => !target.expr?.trim())
            .map(() => `${panel.title}: empty expr`),
          ...(new Set(refIds).size === refIds.length ? [] : [`${panel.title}: repeated refId`]),
        ];
      });
    assert.deepEqual(wrong, []);
  });

  test("panel ids are unique", () => {
    const ids = panels.map((panel) => panel.id);
    assert.deepEqual(
      ids.filter((id, index) => ids.indexOf(id) !== index),
      [],
    );
  });

  test("every expression, variable queries included, parses (promtool check rules)", () => {
    const expressions = dashboardExpressions();
    assert.ok(expressions.length > 20, `${expressions.length} expressions`);
    const directory = mkdtempSync(join(tmpdir(), "kms-envelope-dashboard-"));
    try {
      const file = join(directory, "dashboard.rules.yaml");
      const asRules = {
        groups: [
          {
            name: "dashboard",
            rules: expressions.map((expr, index) => ({ record: `dashboard:expr_${index}`, expr })),
          },
        ],
      };
      writeFileSync(file, JSON.stringify(asRules));
      const run = promtool("check", "rules", file);
      assert.equal(run.status, 0, run.output);
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });
});

describe("rules, rule tests and dashboard against a real daemon's /metrics", () => {
  const suite = suiteDaemon();
  /** Sample names in the scrape, each with the label-name sets it appears with. */
  const scraped = new Map<string, Set<string>>();

  before(async () => {
    const { kmsV2, field, health } = suite.clients;
    await call(kmsV2, "Status", {});
    const sealed = await call<{ ciphertext: Buffer; key_id: string }>(kmsV2, "Encrypt", {
      plaintext: randomBytes(32),
      uid: "monitoring",
    });
    await call(kmsV2, "Decrypt", { ...sealed, uid: "monitoring" });
    await callError(kmsV2, "Decrypt", { ciphertext: Buffer.alloc(3), key_id: sealed.key_id });
    const records = [
      { workspace: "ws", resource: "users", record_id: "u1", fields: { email: Buffer.from("x") } },
    ];
    const fields = await call<{ records: typeof records }>(field, "Seal", { records });
    await call(field, "Open", { records: fields.records });
    await call(field, "Lookup", {
      workspace: "ws",
      resource: "users",
      field: "email",
      normalizers: ["trim"],
      values: [Buffer.from("x")],
    });
    await call(health, "Check", { service: "" });
    const text = await (await fetch(`http://${suite.daemon.httpAddress}/metrics`)).text();
    for (const line of text.split("\n")) {
      if (line === "" || line.startsWith("#")) continue;
      const shape = seriesShape(line.slice(0, line.lastIndexOf(" ")));
      const labelSets = scraped.get(shape.name) ?? new Set<string>();
      labelSets.add(shape.labels.join(","));
      scraped.set(shape.name, labelSets);
    }
  });

  /** Names neither scraped nor added by Prometheus (nor, where rules may be read, recorded). */
  function missing(names: Iterable<string>, readsRecordingRules = true): string[] {
    return [...names].filter(
      (name) =>
        !scraped.has(name) && !PER_TARGET.has(name) && !(readsRecordingRules && recorded.has(name)),
    );
  }

  test("the scrape was read: it has the daemon's own metrics and kube-apiserver's key-id families", () => {
    assert.ok(scraped.has("kms_envelope_grpc_requests_total"));
    assert.ok(
      scraped.has("apiserver_envelope_encryption_key_id_hash_status_last_timestamp_seconds"),
    );
  });

  test("every metric the rules read exists in the scrape", () => {
    const used = new Set(rules.flatMap((rule) => [...metricNames(rule.expr)]));
    assert.ok(used.size > 10, [...used].join(" "));
    assert.deepEqual(missing(used), []);
  });

  test("every input series of the rule tests exists in the scrape, with the same label names", () => {
    const wrong = ruleTests.flatMap((ruleTest) =>
      ruleTest.input_series.flatMap(({ series }) => {
        const shape = seriesShape(series);
        if (PER_TARGET.has(shape.name)) return [];
        const labelSets = scraped.get(shape.name);
        if (labelSets === undefined) return [`${ruleTest.name}: ${shape.name} is not exported`];
        // job and instance are the labels Prometheus adds at scrape time.
        const own = shape.labels.filter((label) => label !== "job" && label !== "instance");
        return labelSets.has(own.join(","))
          ? []
          : [
              `${ruleTest.name}: ${shape.name} has labels ${[...labelSets].join(" | ")}, not ${own}`,
            ];
      }),
    );
    assert.deepEqual(wrong, []);
    const queried = ruleTests.flatMap((ruleTest) =>
      (ruleTest.promql_expr_test ?? []).flatMap((entry) => [...metricNames(entry.expr)]),
    );
    assert.deepEqual(missing(queried), []);
  });

  test("every metric the dashboard queries exists in the scrape (it needs no recording rule)", () => {
    const used = new Set(dashboardExpressions().flatMap((expr) => [...metricNames(expr)]));
    assert.ok(used.size > 15, [...used].join(" "));
    assert.deepEqual(missing(used, false), []);
  });
});
