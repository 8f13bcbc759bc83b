import { Command } from "commander";
import { z } from "zod";
import { durationSchema } from "../config/duration.js";
import { flagIssuesError } from "../config/issues.js";
import { runPluginConformance } from "../conformance/plugin/index.js";
import { runProviderConformance } from "../conformance/provider/index.js";
import { moduleSubject } from "../conformance/provider-subject.js";
import { type ConformanceReport, formatReport } from "../conformance/report.js";
import { ConfigError } from "../errors.js";

interface ConformanceFlags {
  endpoint?: string;
  v1?: boolean;
  json?: boolean;
  timeout: string;
  concurrency?: string;
  samples: string;
  provider?: string;
  keyRef?: string;
  otherKeyRef?: string;
  providerTimeout: string;
  providerAttempts: string;
  providerEndpoint?: string;
  region?: string;
}

const count = (maximum: number) =>
  z
    .string()
    .regex(/^\d+$/, "must be a whole number")
    .transform(Number)
    .pipe(z.number().min(1).max(maximum));

const schema = z.object({
  timeout: durationSchema.pipe(z.number().min(10, "must be at least 10ms")),
  concurrency: count(10_000).optional(),
  samples: count(100_000),
  providerTimeout: durationSchema.pipe(z.number().min(100, "must be at least 100ms")),
  providerAttempts: count(10),
  providerEndpoint: z.url("must be a URL such as https://kms.example.internal").optional(),
});

function parseFlags(flags: ConformanceFlags): z.infer<typeof schema> {
  const parsed = schema.safeParse(flags);
  if (parsed.success) return parsed.data;
  throw flagIssuesError(parsed.error.issues);
}

/**
 * `kms-envelope conformance`: checks a KMS plugin socket against the Kubernetes KMS contract
 * (`--endpoint`), or a custody provider module against the provider contract (`--provider`).
 * Exit 0 when it conforms (warnings allowed), 1 when a rule fails, 2 for a wrong invocation.
 * Flags only, no KMS_ENVELOPE_* variables: a daemon's KMS_ENVELOPE_ENDPOINT (its key
 * service) must never be taken for the plugin under test.
 */
export function conformanceCommand(): Command {
  return new Command("conformance")
    .description(
      "check any KMS plugin socket against the Kubernetes KMS contract, or a custody provider module against the provider contract",
    )
    .option(
      "--endpoint <endpoint>",
      "plugin socket: unix:///path.sock, unix:///@abstract or a path",
    )
    .option("--v1", "also check the deprecated v1beta1 API on the socket")
    .option("--timeout <duration>", "deadline of each plugin call (kube-apiserver's default)", "3s")
    .option(
      "--concurrency <n>",
      "calls in flight at once in the concurrency rule (default 64 for a plugin, 200 for a provider)",
    )
    .option("--samples <n>", "sequential calls of each kind timed by the latency rule", "50")
    .option(
      "--provider <name|module>",
      "custody provider to check: aws, azure, gcp, vault, pkcs11, local, or a module path",
    )
    .option(
      "--key-ref <ref>",
      "the provider key to check with (AWS key ARN, Azure versioned key URL, pkcs11: URI, …)",
    )
    .option("--other-key-ref <ref>", "a second key of the same provider, for the wrong-key rule")
    .option(
      "--provider-timeout <duration>",
      "deadline of one provider call, retries included",
      "10s",
    )
    .option("--provider-attempts <n>", "attempts per provider call", "3")
    .option("--provider-endpoint <url>", "provider service endpoint (private endpoint, emulator)")
    .option("--region <region>", "cloud region when the key reference does not name it")
    .option("--json", "print the report as JSON (for CI)")
    .action(async (flags: ConformanceFlags) => {
      const parsed = parseFlags(flags);
      if ((flags.endpoint === undefined) === (flags.provider === undefined)) {
        throw new ConfigError(
          "--endpoint or --provider",
          flags.endpoint === undefined ? "neither is given" : "both are given",
          "give either --endpoint unix:///path.sock (a KMS plugin) or --provider with --key-ref (a custody provider)",
        );
      }
      let report: ConformanceReport;
      if (flags.endpoint !== undefined) {
        report = await runPluginConformance({
          endpoint: flags.endpoint,
          v1: flags.v1 === true,
          timeoutMs: parsed.timeout,
          concurrency: parsed.concurrency,
          latencySamples: parsed.samples,
        });
      } else {
        if (flags.keyRef === undefined) {
          throw new ConfigError(
            "--key-ref",
            "is required with --provider: it names the key to check with",
            "give one, e.g. --key-ref arn:aws:kms:…",
          );
        }
        const subject = await moduleSubject({
          specifier: flags.provider as string,
          keyRef: flags.keyRef,
          otherKeyRef: flags.otherKeyRef,
          options: {
            timeoutMs: parsed.providerTimeout,
            maxAttempts: parsed.providerAttempts,
            endpoint: parsed.providerEndpoint,
            region: flags.region,
            environment: process.env,
          },
        });
        report = await runProviderConformance(subject, { concurrency: parsed.concurrency });
      }
      process.stdout.write(
        flags.json ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report),
      );
      if (!report.conforms) {
        // The verdict, in the one line every failing command leaves on stderr.
        const failed = report.results.filter((result) => result.status === "fail");
        process.stderr.write(
          `kms-envelope: ${report.target} does not conform: ${failed.length} rules failed (${failed
            .slice(0, 5)
            .map((result) => result.id)
            .join(", ")}${failed.length > 5 ? ", …" : ""}); the report on stdout says why\n`,
        );
        process.exitCode = 1;
      }
    });
}
