import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { PACKAGE_ROOT } from "../package-info.js";
import type { ProtoGrpcType as KmsTree } from "./generated/api.js";
import type { ProtoGrpcType as FieldTree } from "./generated/field.js";
import type { ProtoGrpcType as HealthTree } from "./generated/health.js";

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

// The generated root types describe exactly this tree (same protos, same loader flags).
const tree = grpc.loadPackageDefinition(packageDefinition) as unknown as KmsTree &
  HealthTree &
  FieldTree;

/** The service definitions the daemon serves and tests dial, typed by the generated code. */
export const services = {
  kmsV2: tree.v2.KeyManagementService,
  kmsV1: tree.v1beta1.KeyManagementService,
  health: tree.grpc.health.v1.Health,
  field: tree.kms_envelope.field.v1.FieldService,
};
