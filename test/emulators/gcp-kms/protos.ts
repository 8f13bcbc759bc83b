import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import type { ServiceDefinition } from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";

const require = createRequire(import.meta.url);

// The emulator speaks the exact contract the client was generated from: the .proto files that
// ship inside @google-cloud/kms, plus google-gax's copies of google/api and google/protobuf that
// they import (CLOUD-PROTOCOLS.md B.3). Both packages expose build/src/index.js as their main.
const kmsMain = require.resolve("@google-cloud/kms");
const gaxMain = createRequire(kmsMain).resolve("google-gax");
const INCLUDE_DIRS = [
  join(dirname(kmsMain), "..", "protos"),
  join(dirname(gaxMain), "..", "protos"),
];

/** Fully-qualified name of the emulated service. */
export const SERVICE_NAME = "google.cloud.kms.v1.KeyManagementService";

/**
 * Loads `google.cloud.kms.v1.KeyManagementService` with camelCase fields, int64 as strings
 * (Int64Value wrappers arrive as `{ value: "123" }`), enums by name and no synthesized defaults,
 * so an absent wrapper stays absent — the CRC32C contract depends on telling those apart.
 */
export function loadKeyManagementService(): ServiceDefinition {
  const definition = loadSync("google/cloud/kms/v1/service.proto", {
    includeDirs: INCLUDE_DIRS,
    keepCase: false,
    longs: String,
    enums: String,
    defaults: false,
    oneofs: true,
  });
  return definition[SERVICE_NAME] as unknown as ServiceDefinition;
}
