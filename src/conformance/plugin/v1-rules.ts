import { randomBytes } from "node:crypto";
import { failureText } from "../plugin-client.js";
import { Findings, type Rule, skipped } from "../report.js";
import { type PluginRun, quoted, SEED_BYTES } from "./run.js";

// KMS v1 stores the plugin's cipher after a uint16 length (KMS-CONTRACT.md §3).
const V1_CIPHER_MAX_BYTES = 0xffff;
const SEMVER = /^v?\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.+-]*)?$/;

export const V1_RULES: readonly Rule<PluginRun>[] = [
  {
    id: "v1.version",
    title: 'v1beta1 Version answers "v1beta1" with a runtime name and semver version',
    async check(run) {
      if (!run.v1) return skipped("v1beta1 not requested (--v1)");
      const findings = new Findings();
      const answer = await run.client.call<{
        version: string;
        runtime_name: string;
        runtime_version: string;
      }>("v1", "Version", { version: "v1beta1" });
      if (!answer.ok) return findings.fail(`Version: ${failureText(answer)}`).outcome();
      const { version, runtime_name: name, runtime_version: runtime } = answer.value;
      findings.expect(
        version === "v1beta1",
        `version ${quoted(version)} (the apiserver refuses anything but "v1beta1")`,
      );
      if (name === "") findings.warn("runtime_name is empty");
      else findings.note(`runtime_name ${quoted(name)}`);
      if (!SEMVER.test(runtime)) findings.warn(`runtime_version ${quoted(runtime)} is not semver`);
      else findings.note(`runtime_version ${quoted(runtime)}`);
      return findings.outcome();
    },
  },
  {
    id: "v1.round-trip",
    title: "v1beta1 Encrypt/Decrypt round-trip a 32-byte DEK",
    async check(run) {
      if (!run.v1) return skipped("v1beta1 not requested (--v1)");
      const findings = new Findings();
      const plain = randomBytes(SEED_BYTES);
      const encrypted = await run.client.call<{ cipher: Buffer }>("v1", "Encrypt", {
        version: "v1beta1",
        plain,
      });
      if (!encrypted.ok) return findings.fail(`Encrypt: ${failureText(encrypted)}`).outcome();
      const size = encrypted.value.cipher.length;
      findings.expect(
        size > 0 && size <= V1_CIPHER_MAX_BYTES,
        `cipher is ${size} bytes (1..${V1_CIPHER_MAX_BYTES}: the v1 envelope stores a 16-bit length)`,
      );
      const decrypted = await run.client.call<{ plain: Buffer }>("v1", "Decrypt", {
        version: "v1beta1",
        cipher: encrypted.value.cipher,
      });
      if (!decrypted.ok) findings.fail(`Decrypt: ${failureText(decrypted)}`);
      else
        findings.expect(
          decrypted.value.plain.equals(plain),
          `Decrypt returned ${decrypted.value.plain.equals(plain) ? "the DEK" : "other bytes"}`,
        );
      return findings.outcome();
    },
  },
];
