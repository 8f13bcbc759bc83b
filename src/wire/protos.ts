import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { PACKAGE_ROOT } from "../package-info.js";

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
