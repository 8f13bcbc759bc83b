import type { KeyManagementServiceClient } from "@google-cloud/kms";
import { grpc } from "google-gax";
import { ConfigError } from "../src/errors.js";

/** Options of the `@google-cloud/kms` client (endpoint, port, credentials, sslCreds…). */
export type GcpKmsClientOptions = NonNullable<
  ConstructorParameters<typeof KeyManagementServiceClient>[0]
>;

/**
 * Client options for an endpoint override: `host[:port]` or `https://host[:port]` keep TLS
 * (private endpoints); `http://` is accepted for loopback emulators only.
 */
export function clientOptionsForEndpoint(endpoint: string): GcpKmsClientOptions {
  const url = new URL(endpoint.includes("://") ? endpoint : `https://${endpoint}`);
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  const port = url.port === "" ? 443 : Number(url.port);
  if (url.protocol === "https:") return { apiEndpoint: host, port };
  if (url.protocol === "http:" && ["127.0.0.1", "::1", "localhost"].includes(host)) {
    // google-gax's grpc is the @grpc/grpc-js instance the client checks credentials against;
    // an explicit universe domain keeps google-gax from running the ADC lookup for one.
    return {
      apiEndpoint: host,
      port,
      sslCreds: grpc.credentials.createInsecure(),
      universeDomain: "googleapis.com",
    };
  }
  throw new ConfigError(
    "gcp endpoint",
    `${JSON.stringify(endpoint)} is not usable`,
    "give host[:port] or https://host[:port]; plain http is for a loopback emulator only",
  );
}
