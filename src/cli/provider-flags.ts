import { type Command, Option } from "commander";
import { z } from "zod";
import { ProviderRegistry } from "../../providers/registry.js";
import type {
  ProviderAttemptObserver,
  ProviderCallObserver,
  ProviderLogger,
} from "../../providers/types.js";
import { durationSchema } from "../config/duration.js";
import { flagIssuesError } from "../config/issues.js";

/** Raw provider flag values. */
export interface ProviderFlagsInput {
  providerModule?: string[];
  providerTimeout: string;
  providerAttempts: string;
  endpoint?: string;
  region?: string;
}

const schema = z.object({
  providerModule: z.array(z.string().min(1)).default([]),
  providerTimeout: durationSchema.pipe(z.number().min(100, "must be at least 100ms")),
  providerAttempts: z
    .string()
    .regex(/^\d+$/, "must be a whole number")
    .transform(Number)
    .pipe(z.number().min(1).max(10)),
  endpoint: z.url("must be a URL such as https://kms.example.internal").optional(),
  region: z.string().min(1).optional(),
});

/** Adds the flags that configure custody providers (serve, keygen, rotate). */
export function addProviderOptions(command: Command): Command {
  return command
    .addOption(
      new Option(
        "--provider-module <module...>",
        "custom provider module (path or package) exporting name and createProvider",
      ).env("KMS_ENVELOPE_PROVIDER_MODULE"),
    )
    .addOption(
      new Option("--provider-timeout <duration>", "deadline of one provider call, retries included")
        .env("KMS_ENVELOPE_PROVIDER_TIMEOUT")
        .default("10s"),
    )
    .addOption(
      new Option(
        "--provider-attempts <n>",
        "attempts per provider call on throttling or transient errors",
      )
        .env("KMS_ENVELOPE_PROVIDER_ATTEMPTS")
        .default("3"),
    )
    .addOption(
      new Option(
        "--endpoint <url>",
        "provider service endpoint (private endpoint, emulator); SDK default otherwise",
      ).env("KMS_ENVELOPE_ENDPOINT"),
    )
    .addOption(
      new Option("--region <region>", "cloud region when the key reference does not name it").env(
        "KMS_ENVELOPE_REGION",
      ),
    );
}

function parseProviderFlags(input: ProviderFlagsInput): z.output<typeof schema> {
  const parsed = schema.safeParse(input);
  if (!parsed.success) throw flagIssuesError(parsed.error.issues);
  return parsed.data;
}

/**
 * Refuses bad provider flags: a value their schema refuses, a custom module that does not
 * load. Commands call it first, so a bad flag is refused even on a path that opens no provider
 * (keygen without --keyring, serve without one): a flag silently ignored today is a surprise
 * the day it is used.
 */
export async function checkProviderFlags(input: ProviderFlagsInput): Promise<void> {
  await (await providerRegistry(input, process.env)).close();
}

/** Validates the provider flags and builds a registry with every custom module loaded. */
export async function providerRegistry(
  input: ProviderFlagsInput,
  environment: NodeJS.ProcessEnv,
  observe?: ProviderCallObserver,
  observeAttempt?: ProviderAttemptObserver,
  logger?: ProviderLogger,
): Promise<ProviderRegistry> {
  const flags = parseProviderFlags(input);
  const registry = new ProviderRegistry({
    timeoutMs: flags.providerTimeout,
    maxAttempts: flags.providerAttempts,
    endpoint: flags.endpoint,
    region: flags.region,
    environment,
    observe,
    observeAttempt,
    logger,
  });
  for (const module of flags.providerModule) await registry.register(module);
  return registry;
}
