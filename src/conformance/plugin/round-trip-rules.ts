import { randomBytes } from "node:crypto";
import { failureText } from "../plugin-client.js";
import { Findings, type Rule } from "../report.js";
import { type PluginRun, SEED_BYTES, stillAnswers } from "./run.js";

const LARGER_SIZES = [1, 16, 64, 1024, 4096, 64 * 1024, 1024 * 1024];

export const ROUND_TRIP_RULES: readonly Rule<PluginRun>[] = [
  {
    id: "round-trip.seed",
    title: "32-byte seeds round-trip through Encrypt and Decrypt",
    async check(run) {
      const findings = new Findings();
      const first = await run.firstEncrypt();
      const seeds = [
        first,
        ...(await Promise.all(
          [1, 2, 3, 4].map(async () => {
            const seed = randomBytes(SEED_BYTES);
            return { seed, result: await run.encrypt(seed) };
          }),
        )),
      ];
      for (const [index, { seed, result }] of seeds.entries()) {
        if (!result.ok) {
          findings.fail(`seed ${index + 1}: Encrypt ${failureText(result)}`);
          continue;
        }
        const decrypted = await run.decrypt(result.value);
        if (!decrypted.ok) findings.fail(`seed ${index + 1}: Decrypt ${failureText(decrypted)}`);
        else
          findings.expect(
            decrypted.value.equals(seed),
            `seed ${index + 1}: Decrypt returned ${decrypted.value.equals(seed) ? "the seed" : `${decrypted.value.length} other bytes`}`,
          );
      }
      return findings.outcome();
    },
  },
  {
    id: "round-trip.sizes",
    title: "other plaintext sizes (1 B to 1 MiB) round-trip or are refused cleanly",
    async check(run) {
      const findings = new Findings();
      for (const size of LARGER_SIZES) {
        const plaintext = randomBytes(size);
        const encrypted = await run.encrypt(plaintext);
        if (!encrypted.ok) {
          // Legal: kube-apiserver only ever sends 32 bytes.
          findings.warn(`${size} bytes: Encrypt refused: ${failureText(encrypted)}`);
          if (!(await stillAnswers(run, findings, `a ${size}-byte Encrypt`))) break;
          continue;
        }
        const decrypted = await run.decrypt(encrypted.value);
        if (!decrypted.ok)
          findings.fail(`${size} bytes: Encrypt answered but Decrypt ${failureText(decrypted)}`);
        else
          findings.expect(
            decrypted.value.equals(plaintext),
            `${size} bytes: ${decrypted.value.equals(plaintext) ? "round-tripped" : `Decrypt returned ${decrypted.value.length} other bytes`} (ciphertext ${encrypted.value.ciphertext.length} bytes)`,
          );
      }
      return findings.outcome();
    },
  },
];
