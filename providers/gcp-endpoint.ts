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

/** The credential an error message asks the operator to fix, and how. */
export interface GcpCredentialSource {
  /** What it is, e.g. "the credentials file /etc/gcp/key.json (GOOGLE_APPLICATION_CREDENTIALS)". */
  name: string;
  /** What to check or do about it. */
  fix: string;
}

/**
 * The credential application default credentials take tokens from, read from the same
 * environment: GOOGLE_APPLICATION_CREDENTIALS, else (past a gcloud login file, which a daemon
 * does not have) the metadata server's service account — the VM's, or on GKE the one the
 * pod's Kubernetes service account is bound to by workload identity. Names paths and hosts only.
 */
export function gcpCredentialSource(
  environment: NodeJS.ProcessEnv,
  explicit: boolean,
): GcpCredentialSource {
  const file = environment.GOOGLE_APPLICATION_CREDENTIALS;
  if (explicit) {
    return {
      name: "the credentials given to the gcp provider",
      fix: "give it valid ones for cloudkms.googleapis.com",
    };
  }
  if (file !== undefined && file !== "") {
    return {
      name: `the credentials file ${file} (GOOGLE_APPLICATION_CREDENTIALS)`,
      fix: "check that it exists and that its service account key or workload identity federation configuration is still valid",
    };
  }
  const host =
    environment.GCE_METADATA_HOST || environment.GCE_METADATA_IP || "metadata.google.internal";
  return {
    name: `the service account of the metadata server ${host} (GCE, or GKE workload identity)`,
    fix: "check that the VM's service account, or the workload identity binding of the pod's Kubernetes service account (roles/iam.workloadIdentityUser), still stands",
  };
}
