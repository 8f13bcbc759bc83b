import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { metricNames, seriesShape, tokenize } from "../../support/promql-names.js";

const names = (expression: string) => [...metricNames(expression)].sort();

describe("metricNames: the metrics a PromQL expression reads", () => {
  test("a bare selector and one with matchers", () => {
    assert.deepEqual(names("up"), ["up"]);
    assert.deepEqual(names('kms_envelope_ready{job=~"$job",instance!="a"} == 0'), [
      "kms_envelope_ready",
    ]);
  });

  test("recording-rule names with colons count as metrics", () => {
    assert.deepEqual(names("kms_envelope:memory_limit:ratio > 0.9"), [
      "kms_envelope:memory_limit:ratio",
    ]);
  });

  test("functions and aggregations are not metrics, whether by/without come before or after", () => {
    assert.deepEqual(
      names(
        "histogram_quantile(0.99, sum by (method, le) (rate(a_bucket[5m]))) / sum(rate(b_total[1h30m])) without (code)",
      ),
      ["a_bucket", "b_total"],
    );
    assert.deepEqual(names("topk by (instance) (3, c) + count_values without (x) ('v', d)"), [
      "c",
      "d",
    ]);
    assert.deepEqual(names("time() - vector(1)"), []);
  });

  test("label lists of on, ignoring, group_left and group_right are not metrics", () => {
    assert.deepEqual(
      names(
        "a == 0 and on (job, instance) b unless ignoring (key_id) c * on (x) group_left (extra, le) d",
      ),
      ["a", "b", "c", "d"],
    );
  });

  test("keywords, numbers, durations, offsets and subqueries are not metrics", () => {
    assert.deepEqual(
      names("a > bool 1e+3 or b offset 5m and max_over_time(c[10m:30s]) or Inf or NaN or 0x1f"),
      ["a", "b", "c"],
    );
  });

  test("strings are not metrics, even when they look like one or hold a brace", () => {
    assert.deepEqual(names('label_replace(a, "dst", "up{", \'src\', `(.*)`)'), ["a"]);
    assert.deepEqual(names('a{method=~"/grpc\\\\.health\\\\.v1\\\\.Health/.*"}'), ["a"]);
  });

  test("a __name__ matcher names its metric; a regex one cannot", () => {
    assert.deepEqual(names('{__name__="kms_envelope_ready", job="x"}'), ["kms_envelope_ready"]);
    assert.deepEqual(names('{__name__=~"kms_.*"}'), []);
  });

  test("comments are skipped", () => {
    assert.deepEqual(names("a # b\n+ c"), ["a", "c"]);
  });

  test("an unterminated string is an error, not a guess", () => {
    assert.throws(() => tokenize('a{job="x}'), /unterminated string/);
  });
});

describe("seriesShape: a series in promtool's input notation", () => {
  test("gives the name and the sorted label names", () => {
    assert.deepEqual(seriesShape('a_total{job="j", code="OK",method="/x.Y/Z"}'), {
      name: "a_total",
      labels: ["code", "job", "method"],
    });
    assert.deepEqual(seriesShape("b"), { name: "b", labels: [] });
  });
});
