/**
 * kms-envelope as a library: the Kubernetes-compatible encryption engine, the field layer that
 * seals the sensitive fields of application records, and the encrypted store beside them.
 *
 * Everything an application needs is exported here; anything not exported is internal and may
 * change in any release. Custom custody providers are written against `kms-envelope/providers`.
 *
 * @packageDocumentation
 */

export { NORMALIZERS, type Normalizer } from "./crypto/lookup-token.js";
export {
  type ConfigProblem,
  InvalidEncryptionConfigurationError,
} from "./engine/config/config-error.js";
export {
  type EncryptionConfigurationOptions,
  loadEncryptionConfiguration,
  type ParseEncryptionConfigurationOptions,
  parseEncryptionConfiguration,
} from "./engine/config/encryption-configuration.js";
export type {
  AesKeyConfig,
  EncryptionConfiguration,
  ProviderConfig,
  ResourceRule,
} from "./engine/config/types.js";
export {
  EncryptionEngine,
  type EngineOptions,
  type KmsProviderHealth,
  type ResourceTransformers,
} from "./engine/encryption-engine.js";
export { EngineMetrics, type ObservedKmsProvider } from "./engine/engine-metrics.js";
export {
  type EngineHealthSummary,
  type EngineOpsReport,
  type EngineOpsSources,
  engineHealth,
  engineOpsHandler,
  engineOpsReport,
  type HealthReporter,
} from "./engine/engine-ops.js";
export { resourceOfEtcdKey } from "./engine/etcd-key.js";
export type { KmsV2Timing } from "./engine/kms/kms-v2-envelope.js";
export {
  ReloadingEngine,
  type ReloadOptions,
  type ReloadOutcome,
} from "./engine/reloading-engine.js";
export type { Read, Stored, Transformer, Writer } from "./engine/transformers/transformer.js";
export {
  ConfigError,
  DecryptionFailedError,
  ERROR_CODES,
  type ErrorCode,
  errorMessage,
  InvalidRequestError,
  KmsEnvelopeError,
  MalformedCiphertextError,
  UnknownKeyIdError,
} from "./errors.js";
export type {
  FieldCodec,
  FieldRecord,
  FieldRoute,
  FieldStamp,
  JsonObject,
  JsonValue,
  LookupToken,
  OpenedRecord,
  SealedRecord,
} from "./fields/field-codec.js";
export type { FieldPlaintext } from "./fields/field-encoding.js";
export type { FieldLayer } from "./fields/field-layer.js";
export {
  type FieldMap,
  type FieldType,
  loadFieldMap,
  parseFieldMap,
  type ResourceFields,
} from "./fields/field-map.js";
export { type FieldLayerSources, openFieldLayer } from "./fields/open-field-layer.js";
export { UnmappedResourceError } from "./fields/unmapped-resource.js";
export { DETECTOR_NAMES, type DetectorName } from "./store/credential-shapes.js";
export {
  CREDENTIALS_RESOURCE,
  type Credential,
  CredentialStore,
  SECRETS_FIELD,
} from "./store/credential-store.js";
export { EncryptedStore, type PlainRecord, type RecordInput } from "./store/encrypted-store.js";
export { openRepository } from "./store/open-repository.js";
export {
  type FindingSink,
  type GuardFinding,
  PlaintextGuard,
  type PlaintextGuardOptions,
} from "./store/plaintext-guard.js";
export type {
  NewRecord,
  PathWriter,
  RecordKey,
  RecordReplacement,
  RecordRepository,
  ReplaceOutcome,
  RewrapLease,
  RewrapRun,
  RewrapRunProgress,
  RewrapTarget,
  ScrubOutcome,
  SharedRewrapStore,
  StoredRecord,
  SubjectPage,
  TokenCount,
  TokenVersion,
  WriterCount,
} from "./store/repository.js";
export {
  type MissingTokens,
  type PlaintextFields,
  type ResourceSummary,
  type RewrapOptions,
  type RewrapProgress,
  type RewrapSummary,
  rewrap,
  type SharedRewrapOptions,
  type SharedRunSummary,
  type StaleFields,
  type StaleTokens,
} from "./store/rewrap.js";
export type { OpenOptions as RepositoryOpenOptions } from "./store/schema.js";
export {
  type ExportedRecord,
  type ExportFormat,
  subjectRecords,
  writeSubjectExport,
} from "./store/subject-export.js";
