import { randomBytes } from "node:crypto";
import type { CallResult } from "../../wire/unary-connection.js";
import { failureText } from "../plugin-client.js";
import { Findings, type Rule, skipped } from "../report.js";
import { type PluginRun, stillAnswers } from "./run.js";

export const DECRYPT_RULES: readonly Rule<PluginRun>[] = [
  {
    id: "decrypt.tamper",
    title: "a modified ciphertext is refused with an error status",
    async check(run) {
      const first = await run.firstEncrypt();
      if (!first.result.ok) return skipped("no Encrypt answer (see encrypt.answers)");
      const answer = first.result.value;
      const findings = new Findings();
      const original = answer.ciphertext;
      for (const [label, index] of [
        ["first", 0],
        ["middle", Math.floor(original.length / 2)],
        ["last", original.length - 1],
      ] as const) {
        const tampered = Buffer.from(original);
        tampered[index] = (tampered[index] ?? 0) ^ 0x01;
        const decrypted = await run.decrypt(answer, tampered);
        if (!decrypted.ok) findings.note(`${label} byte flipped: ${failureText(decrypted)}`);
        else if (decrypted.value.equals(first.seed))
          findings.warn(
            `${label} byte flipped: Decrypt still returned the seed (that bit is not authenticated)`,
          );
        else
          findings.fail(
            `${label} byte flipped: Decrypt returned ${decrypted.value.length} other bytes instead of an error`,
          );
        if (!(await stillAnswers(run, findings, "a tampered Decrypt"))) break;
      }
      return findings.outcome();
    },
  },
  {
    id: "decrypt.garbage",
    title: "garbage ciphertexts and requests get an error status and the plugin keeps answering",
    async check(run) {
      const first = await run.firstStatus();
      const keyId = first.ok ? first.value.key_id : "";
      const findings = new Findings();
      const garbage: [string, () => Promise<CallResult<unknown>>][] = [
        ...(
          [
            ["empty", 0],
            ["1-byte", 1],
            ["64-byte random", 64],
            ["2048-byte random", 2048],
          ] as const
        ).map(
          ([label, size]) =>
            [
              `${label} ciphertext`,
              () => run.decrypt({ ciphertext: randomBytes(size), key_id: keyId, annotations: {} }),
            ] as [string, () => Promise<CallResult<unknown>>],
        ),
        [
          "a request that is not protobuf",
          () => run.client.callRaw("Decrypt", Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f])),
        ],
      ];
      for (const [label, call] of garbage) {
        const result = await call();
        if (result.ok) findings.fail(`${label}: answered OK instead of an error`);
        else findings.note(`${label}: ${failureText(result)}`);
        if (!(await stillAnswers(run, findings, `the ${label}`))) break;
      }
      return findings.outcome();
    },
  },
];
