import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { PACKAGE_ROOT } from "../package-info.js";

/** Marker put in place of a request that failed to deserialize. */
export const UNDECODABLE = Symbol("undecodable request");

/** A request that could not be decoded; the handler answers INVALID_ARGUMENT. */
export interface UndecodableRequest {
  [UNDECODABLE]: string;
}

const PROTO_FILES = [
  "k8s.io/kms/apis/v2/api.proto",
  "k8s.io/kms/apis/v1beta1/api.proto",
  "grpc/health/v1/health.proto",
  "kms_envelope/field/v1/field.proto",
];

// keepCase keeps the wire names (key_id, record_id); defaults fills absent proto3 fields so
// handlers see "" and empty buffers rather than undefined.
const packageDefinition = loadSync(PROTO_FILES, {
  includeDirs: [join(PACKAGE_ROOT, "proto")],
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});

// biome-ignore lint/suspicious/noExplicitAny: loadPackageDefinition returns an untyped tree.
const tree = grpc.loadPackageDefinition(packageDefinition) as any;

/** The service definitions the daemon serves and tests dial. */
export const services = {
  kmsV2: tree.v2.KeyManagementService as grpc.ServiceClientConstructor,
  kmsV1: tree.v1beta1.KeyManagementService as grpc.ServiceClientConstructor,
  health: tree.grpc.health.v1.Health as grpc.ServiceClientConstructor,
  field: tree.kms_envelope.field.v1.FieldService as grpc.ServiceClientConstructor,
};

/**
 * grpc-js answers a request it cannot deserialize with INTERNAL, which reads like a daemon
 * fault. Wrapping the deserializers lets the handler answer INVALID_ARGUMENT instead: garbage
 * from the client is the client's error (SPEC.md §4).
 */
export function withSafeDeserializers(definition: grpc.ServiceDefinition): grpc.ServiceDefinition {
  const entries = Object.entries(definition).map(([name, method]) => [
    name,
    {
      ...method,
      requestDeserialize: (bytes: Buffer) => {
        try {
          return method.requestDeserialize(bytes);
        } catch (error) {
          const reason = error instanceof Error ? error.message : "unparseable";
          return { [UNDECODABLE]: reason } satisfies UndecodableRequest;
        }
      },
    },
  ]);
  return Object.fromEntries(entries) as grpc.ServiceDefinition;
}

/** True when the request is the undecodable marker. */
export function isUndecodable(request: object): request is UndecodableRequest {
  return UNDECODABLE in request;
}
