import { ACCEPTED_VERSIONS, keyIdProblem } from "../../engine/kms/kms-v2-rules.js";
import type { StatusResponse__Output } from "../../wire/generated/v2/StatusResponse.js";
import { failureText } from "../plugin-client.js";
import { Findings, type Rule, skipped } from "../report.js";
import { type PluginRun, quoted } from "./run.js";

// kube-apiserver's limits on a KMS v2 plugin's answers (KMS-CONTRACT.md §2.1).

/** Judges the first Status answer; skips when there is none (status.answers says why). */
function statusRule(
  id: string,
  title: string,
  judge: (status: StatusResponse__Output, findings: Findings) => void,
): Rule<PluginRun> {
  return {
    id,
    title,
    async check(run) {
      const status = await run.firstStatus();
      if (!status.ok) return skipped("no Status answer (see status.answers)");
      const findings = new Findings();
      judge(status.value, findings);
      return findings.outcome();
    },
  };
}

export const STATUS_RULES: readonly Rule<PluginRun>[] = [
  {
    id: "status.answers",
    title: "Status answers within the call timeout",
    async check(run) {
      const status = await run.firstStatus();
      const findings = new Findings();
      if (status.ok) findings.note(`Status answered in ${status.ms} ms`);
      else findings.fail(`Status: ${failureText(status)}`);
      return findings.outcome();
    },
  },
  statusRule("status.version", 'Status version is "v2" or "v2beta1"', (status, findings) => {
    findings.expect(
      ACCEPTED_VERSIONS.includes(status.version),
      `version ${quoted(status.version)}`,
    );
  }),
  statusRule("status.healthz", 'Status healthz is exactly "ok"', (status, findings) => {
    findings.expect(status.healthz === "ok", `healthz ${quoted(status.healthz)}`);
  }),
  statusRule(
    "status.key-id",
    "Status key_id is non-empty and at most 1024 bytes",
    (status, findings) => {
      const problem = keyIdProblem(status.key_id);
      if (problem === undefined)
        findings.note(
          `key_id ${quoted(status.key_id)} (${Buffer.byteLength(status.key_id)} bytes)`,
        );
      else findings.fail(problem);
    },
  ),
  {
    id: "status.stable",
    title: "version and key_id do not change between Status calls",
    async check(run) {
      const first = await run.firstStatus();
      if (!first.ok) return skipped("no Status answer (see status.answers)");
      const findings = new Findings();
      const versions = new Set([first.value.version]);
      const keyIds = new Set([first.value.key_id]);
      const calls = 5;
      for (let index = 0; index < calls; index += 1) {
        const status = await run.status();
        if (!status.ok) {
          findings.fail(`Status call ${index + 2}: ${failureText(status)}`);
          continue;
        }
        versions.add(status.value.version);
        keyIds.add(status.value.key_id);
      }
      findings.expect(
        versions.size === 1,
        `${calls + 1} calls gave ${versions.size} version(s): ${[...versions].map(quoted).join(", ")}`,
      );
      findings.expect(
        keyIds.size === 1,
        `${calls + 1} calls gave ${keyIds.size} key_id(s)${keyIds.size > 1 ? ": a flip-flopping key_id makes the apiserver re-seed" : ""}`,
      );
      return findings.outcome();
    },
  },
];
