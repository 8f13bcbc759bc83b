import { ProviderError } from "../../../providers/types.js";
import { KmsEnvelopeError } from "../../errors.js";
import { Findings, type Rule, skipped } from "../report.js";
import { CONTEXT, type ProviderRun, sameBytes, seen, wrapped } from "./run.js";

const ROUND_TRIP_SIZES = [16, 24, 32, 48, 64] as const;

export const ROUND_TRIP_RULES: readonly Rule<ProviderRun>[] = [
  {
    id: "provider.round-trip",
    title: "32-byte keys round-trip; 16..64-byte keys round-trip or are refused up front",
    async check(run) {
      const findings = new Findings();
      const provider = await run.provider();
      for (const size of ROUND_TRIP_SIZES) {
        const key = run.newKey(size);
        const wrap = await run.attempt(() => provider.wrapKey(key, CONTEXT));
        if (!wrap.ok) {
          const refusedUpFront =
            wrap.error instanceof KmsEnvelopeError &&
            !(wrap.error instanceof ProviderError) &&
            wrap.error.code === "INVALID_MASTER_KEY";
          if (size !== 32 && refusedUpFront)
            findings.note(`${size} bytes: refused up front (INVALID_MASTER_KEY)`);
          else findings.fail(`${size} bytes: wrapKey ${seen(wrap)}`);
          continue;
        }
        const wrappedBytes = wrap.value;
        if (wrappedBytes.length === 0) {
          findings.fail(`${size} bytes: wrapKey returned nothing`);
          continue;
        }
        if (Buffer.from(wrappedBytes).includes(Buffer.from(key)))
          findings.fail(`${size} bytes: the wrapped key contains the key`);
        const unwrap = await run.attempt(() => provider.unwrapKey(wrappedBytes, CONTEXT));
        if (!unwrap.ok) findings.fail(`${size} bytes: unwrapKey ${seen(unwrap)}`);
        else
          findings.expect(
            sameBytes(unwrap.value, key),
            `${size} bytes: wrapped to ${wrappedBytes.length} bytes and unwrapped ${sameBytes(unwrap.value, key) ? "to the same key" : `to ${unwrap.value.length} other bytes`}`,
          );
      }
      const key = run.newKey(32);
      const twice = [
        await run.attempt(() => provider.wrapKey(key, CONTEXT)),
        await run.attempt(() => provider.wrapKey(key, CONTEXT)),
      ];
      for (const [index, wrap] of twice.entries()) {
        if (!wrap.ok) {
          findings.fail(`wrapping the same key again (${index + 1}) ${seen(wrap)}`);
          continue;
        }
        const unwrap = await run.attempt(() => provider.unwrapKey(wrap.value, CONTEXT));
        findings.expect(
          unwrap.ok && sameBytes(unwrap.value, key),
          `wrapping the same key twice: copy ${index + 1} unwraps ${unwrap.ok ? "to it" : seen(unwrap)}`,
        );
      }
      return findings.outcome();
    },
  },
  {
    id: "provider.durable",
    title: "a new instance for the same key unwraps what an earlier one wrapped",
    async check(run) {
      if (run.subject.durable === false)
        return skipped(`${run.subject.label} keeps its keys in memory only (a test provider)`);
      const findings = new Findings();
      const setup = await wrapped(run, findings);
      if (setup === undefined) return findings.outcome();
      await setup.provider.close();
      const fresh = await run.provider();
      const unwrap = await run.attempt(() => fresh.unwrapKey(setup.wrapped, CONTEXT));
      findings.expect(
        unwrap.ok && sameBytes(unwrap.value, setup.key),
        `a new instance (the first one closed) unwrapped ${unwrap.ok ? (sameBytes(unwrap.value, setup.key) ? "the same key" : "other bytes") : seen(unwrap)}`,
      );
      return findings.outcome();
    },
  },
];
