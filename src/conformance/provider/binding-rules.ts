import { Findings, type Rule, skipped } from "../report.js";
import { CONTEXT, errorClassOf, type ProviderRun, sameBytes, seen, wrapped } from "./run.js";

const OTHER_CONTEXT = { keyId: "conformance:key-id-0002" };

export const BINDING_RULES: readonly Rule<ProviderRun>[] = [
  {
    id: "provider.tamper",
    title: "a damaged wrapped key is refused as corrupt",
    async check(run) {
      const findings = new Findings();
      const setup = await wrapped(run, findings);
      if (setup === undefined) return findings.outcome();
      const original = Buffer.from(setup.wrapped);
      const flip = (index: number) => {
        const copy = Buffer.from(original);
        copy[index] = (copy[index] ?? 0) ^ 0x01;
        return copy;
      };
      const damaged: [string, Buffer][] = [
        ["first byte flipped", flip(0)],
        ["middle byte flipped", flip(Math.floor(original.length / 2))],
        ["last byte flipped", flip(original.length - 1)],
        ["last byte dropped", original.subarray(0, original.length - 1)],
        ["one byte appended", Buffer.concat([original, Buffer.from([0])])],
        ["empty", Buffer.alloc(0)],
      ];
      for (const [label, bytes] of damaged) {
        const unwrap = await run.attempt(() => setup.provider.unwrapKey(bytes, CONTEXT));
        if (unwrap.ok)
          findings.fail(
            `${label}: unwrapKey succeeded (${sameBytes(unwrap.value, setup.key) ? "the same key: those bytes are not authenticated" : "other bytes"})`,
          );
        else
          findings.expect(
            errorClassOf(unwrap.error) === "corrupt",
            `${label}: unwrapKey ${seen(unwrap)}`,
          );
      }
      return findings.outcome();
    },
  },
  {
    id: "provider.wrong-key",
    title: "a key wrapped under another provider key is refused as corrupt or user",
    async check(run) {
      const other = await run.otherKeyProvider();
      if (other === undefined) return skipped(`no second key was given for ${run.subject.label}`);
      const findings = new Findings();
      const provider = await run.provider();
      const key = run.newKey(32);
      const wrap = await run.attempt(() => other.wrapKey(key, CONTEXT));
      if (!wrap.ok) return findings.fail(`wrapKey with the other key ${seen(wrap)}`).outcome();
      const unwrap = await run.attempt(() => provider.unwrapKey(wrap.value, CONTEXT));
      if (unwrap.ok)
        findings.fail(
          `unwrapKey with the key under test succeeded (${sameBytes(unwrap.value, key) ? "the same key" : "other bytes"})`,
        );
      else {
        const errorClass = errorClassOf(unwrap.error);
        findings.expect(
          errorClass === "corrupt" || errorClass === "user",
          `unwrapKey with the key under test ${seen(unwrap)}`,
        );
      }
      return findings.outcome();
    },
  },
  {
    id: "provider.context",
    title: "a wrapped key is bound to its key id (context)",
    async check(run) {
      const findings = new Findings();
      const setup = await wrapped(run, findings);
      if (setup === undefined) return findings.outcome();
      const unwrap = await run.attempt(() =>
        setup.provider.unwrapKey(setup.wrapped, OTHER_CONTEXT),
      );
      if (!unwrap.ok) {
        const errorClass = errorClassOf(unwrap.error);
        findings.expect(
          errorClass === "corrupt" || errorClass === "user",
          `unwrapKey under another key id ${seen(unwrap)}`,
        );
      } else {
        // Legal: the daemon checks that an unwrapped key derives the key id it was filed under,
        // so a swapped keyring entry is still caught; binding at the provider catches it sooner.
        findings.warn(
          "unwrapKey under another key id succeeded: the provider does not bind the context (the daemon's key-id check still refuses swapped entries)",
        );
      }
      return findings.outcome();
    },
  },
];
