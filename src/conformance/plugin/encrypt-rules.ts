import {
  ANNOTATIONS_MAX_BYTES,
  ENCRYPTED_DEK_SOURCE_MAX_BYTES as CIPHERTEXT_MAX_BYTES,
  fqdnProblem,
  keyIdProblem,
} from "../../engine/kms/kms-v2-rules.js";
import type { EncryptResponse__Output } from "../../wire/generated/v2/EncryptResponse.js";
import { failureText } from "../plugin-client.js";
import { Findings, type Rule, skipped } from "../report.js";
import { type PluginRun, quoted } from "./run.js";

/** Judges the first seed Encrypt answer; skips when there is none (encrypt.answers says why). */
function encryptRule(
  id: string,
  title: string,
  judge: (
    answer: EncryptResponse__Output,
    findings: Findings,
    run: PluginRun,
  ) => Promise<void> | void,
): Rule<PluginRun> {
  return {
    id,
    title,
    async check(run) {
      const { result } = await run.firstEncrypt();
      if (!result.ok) return skipped("no Encrypt answer (see encrypt.answers)");
      const findings = new Findings();
      await judge(result.value, findings, run);
      return findings.outcome();
    },
  };
}

export const ENCRYPT_RULES: readonly Rule<PluginRun>[] = [
  {
    id: "encrypt.answers",
    title: "Encrypt of a 32-byte seed answers",
    async check(run) {
      const { result } = await run.firstEncrypt();
      const findings = new Findings();
      if (result.ok) findings.note(`Encrypt answered in ${result.ms} ms`);
      else findings.fail(`Encrypt: ${failureText(result)}`);
      return findings.outcome();
    },
  },
  encryptRule(
    "encrypt.key-id",
    "Encrypt key_id is non-empty and at most 1024 bytes",
    (answer, findings) => {
      const problem = keyIdProblem(answer.key_id);
      if (problem === undefined)
        findings.note(
          `key_id ${quoted(answer.key_id)} (${Buffer.byteLength(answer.key_id)} bytes)`,
        );
      else findings.fail(problem);
    },
  ),
  encryptRule(
    "encrypt.key-id-matches-status",
    "Encrypt key_id equals the Status key_id",
    async (answer, findings, run) => {
      const status = await run.firstStatus();
      if (!status.ok) {
        findings.fail(`no Status answer to compare with: ${failureText(status)}`);
        return;
      }
      findings.expect(
        answer.key_id === status.value.key_id,
        answer.key_id === status.value.key_id
          ? "Encrypt and Status name the same key_id"
          : `Encrypt key_id ${quoted(answer.key_id)} differs from Status key_id ${quoted(status.value.key_id)}: the apiserver discards the seed and reports the plugin unhealthy`,
      );
    },
  ),
  encryptRule(
    "encrypt.ciphertext-size",
    "Encrypt ciphertext of a 32-byte seed is non-empty and at most 1024 bytes",
    (answer, findings) => {
      const size = answer.ciphertext.length;
      findings.expect(
        size > 0 && size <= CIPHERTEXT_MAX_BYTES,
        `ciphertext is ${size} bytes (1..${CIPHERTEXT_MAX_BYTES} allowed)`,
      );
    },
  ),
  encryptRule(
    "encrypt.annotation-keys",
    "every annotation key is a fully qualified domain name",
    (answer, findings) => {
      const keys = Object.keys(answer.annotations);
      if (keys.length === 0) findings.note("no annotations");
      for (const key of keys) {
        const problem = fqdnProblem(key);
        if (problem === undefined) findings.note(`annotation key ${quoted(key)} is valid`);
        else findings.fail(`annotation key ${quoted(key)} ${problem}`);
      }
    },
  ),
  encryptRule(
    "encrypt.annotation-size",
    "annotation keys and values total at most 32 KiB",
    (answer, findings) => {
      const total = Object.entries(answer.annotations).reduce(
        (sum, [key, value]) => sum + Buffer.byteLength(key) + value.length,
        0,
      );
      findings.expect(
        total <= ANNOTATIONS_MAX_BYTES,
        `annotations total ${total} bytes (at most ${ANNOTATIONS_MAX_BYTES}); they are stored unencrypted in etcd`,
      );
    },
  ),
];
