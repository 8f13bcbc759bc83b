/**
 * Child process of the daemon-environment test: `node --import tsx daemon-env-round-trip.ts
 * <keyUrl>`, started with only the emulator's daemonEnvironment() (plus PATH and HOME). It does
 * what the daemon's provider registry does — `createProvider(keyRef, options)` of the built-in
 * azure module, no credential and no client options — wraps and unwraps a 32-byte key, and
 * prints OK. On failure it prints the error chain to stderr and exits with 1.
 */
import { randomBytes } from "node:crypto";
import { fileURLToPath, pathToFileURL } from "node:url";
import type { ProviderOptions } from "../../../providers/types.js";

type AzureModule = typeof import("../../../providers/azure.js");

const keyUrl = process.argv[2];
if (keyUrl === undefined) {
  console.error("usage: daemon-env-round-trip.ts <keyUrl>");
  process.exit(2);
}

// The module by absolute path, as the daemon loads its built-in provider.
const modulePath = fileURLToPath(new URL("../../../providers/azure.ts", import.meta.url));
const { createProvider } = (await import(pathToFileURL(modulePath).href)) as AzureModule;
const options: ProviderOptions = { timeoutMs: 10_000, maxAttempts: 3, environment: process.env };
const provider = createProvider(keyUrl, options);
const context = { keyId: "azure:daemon-env" };
try {
  const masterKey = randomBytes(32);
  const wrapped = await provider.wrapKey(masterKey, context);
  const unwrapped = await provider.unwrapKey(wrapped, context);
  if (!Buffer.from(unwrapped).equals(masterKey)) throw new Error("unwrapped key differs");
  console.log("OK");
} catch (error) {
  let cause: unknown = error;
  for (let depth = 0; cause !== undefined && depth < 5; depth += 1) {
    console.error(cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause));
    cause = cause instanceof Error ? cause.cause : undefined;
  }
  process.exitCode = 1;
} finally {
  await provider.close();
}
