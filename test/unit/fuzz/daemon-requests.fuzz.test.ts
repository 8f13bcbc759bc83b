import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { type MethodDefinition, status } from "@grpc/grpc-js";
import fc from "fast-check";
import { ProviderError } from "../../../providers/types.js";
import { fieldContext, KMS_V1_CONTEXT, KMS_V2_CONTEXT } from "../../../src/crypto/contexts.js";
import { formatFieldValue } from "../../../src/crypto/field-value.js";
import { encodeKmsCiphertext } from "../../../src/crypto/kms-ciphertext.js";
import { NORMALIZERS, parseLookupToken } from "../../../src/crypto/lookup-token.js";
import { seal } from "../../../src/crypto/sealed.js";
import { loadSecretbox } from "../../../src/crypto/secretbox.js";
import { KmsEnvelopeError } from "../../../src/errors.js";
import { HealthMonitor } from "../../../src/keys/health-monitor.js";
import { MasterKeySet } from "../../../src/keys/master-key-set.js";
import { SealingService } from "../../../src/keys/sealing-service.js";
import { createLogger } from "../../../src/ops/logger.js";
import { DaemonMetrics } from "../../../src/ops/metrics.js";
import type { ProbeSources } from "../../../src/ops/probes.js";
import { type CallFailure, toCallFailure } from "../../../src/server/error-status.js";
import { fieldService } from "../../../src/server/field-service.js";
import { FieldWorkerPool } from "../../../src/server/field-worker-pool.js";
import type {
  RawHandler,
  ResponseStream,
  ServiceHandlers,
} from "../../../src/server/grpc-server.js";
import { healthService } from "../../../src/server/health-service.js";
import { kmsV1Service } from "../../../src/server/kms-v1-service.js";
import { kmsV2Service } from "../../../src/server/kms-v2-service.js";
import { services } from "../../../src/wire/protos.js";
import {
  mutationOf,
  PROTOTYPE_NAMES,
  protobufMessage,
  runs,
  textMutationOf,
} from "./fuzz-support.js";

await loadSecretbox();

type ServiceName = keyof typeof services;
type Definition = MethodDefinition<object, object>;

const WORKSPACE = "kubernetes";
const SERVED = [
  "v2.KeyManagementService",
  "v1beta1.KeyManagementService",
  "kms_envelope.field.v1.FieldService",
];
// Small, so generated batches reach the per-record and per-request refusals.
const LIMITS = { maxFieldsPerRequest: 8, maxFieldsPerRecord: 3 };

const keys = MasterKeySet.of("local", [randomBytes(32), randomBytes(32)]);
const [primaryKeyId, olderKeyId] = keys.keyIds as [string, string];

interface Daemon {
  readonly handlers: Record<ServiceName, ServiceHandlers>;
  readonly monitor: HealthMonitor;
  readonly workers: FieldWorkerPool;
}

/** The daemon's handlers wired as daemon.ts wires them, minus the socket. */
async function startHandlers(healthy: boolean): Promise<Daemon> {
  const monitor = new HealthMonitor({
    check: async () => {
      if (!healthy) throw new ProviderError("user", "the provider key is disabled");
    },
    intervalMs: 3_600_000,
    timeoutMs: 1_000,
    // Zero grace: an unhealthy daemon is suspended at once, so its refusals are exercised too.
    gracePeriodMs: 0,
  });
  await monitor.start();
  const envelope = new SealingService({ keys, kmsWorkspace: WORKSPACE, health: monitor });
  const probes: ProbeSources = {
    starting: () => false,
    health: () => monitor.snapshot(),
    selfTest: () => envelope.selfTest(),
    serving: () => true,
  };
  const logger = createLogger("silent");
  const workers = await FieldWorkerPool.start({ size: 1, keys, limits: LIMITS, logger });
  const metrics = new DaemonMetrics();
  return {
    monitor,
    workers,
    handlers: {
      kmsV2: kmsV2Service(envelope, probes, metrics.keyIds),
      kmsV1: kmsV1Service(envelope),
      field: fieldService(envelope, workers, metrics),
      health: healthService(SERVED, probes).handlers,
    },
  };
}

let healthy: Daemon;
let suspended: Daemon;
before(async () => {
  [healthy, suspended] = await Promise.all([startHandlers(true), startHandlers(false)]);
});
after(async () => {
  for (const daemon of [healthy, suspended]) {
    daemon.monitor.stop();
    await daemon.workers.close();
  }
});

type Shape =
  | "string"
  | "bytes"
  | { map: "string" | "bytes" }
  | { list: Shapes | "string" | "bytes" };
type Shapes = Readonly<Record<string, Shape>>;

const PLAIN_RECORD: Shapes = {
  workspace: "string",
  resource: "string",
  record_id: "string",
  fields: { map: "bytes" },
};
const SEALED_RECORD: Shapes = { ...PLAIN_RECORD, fields: { map: "string" } };

/** Each method's request as its handler reads it (proto3 defaults filled in, SPEC.md §4). */
const METHODS: readonly { service: ServiceName; method: string; request: Shapes }[] = [
  { service: "kmsV2", method: "Status", request: {} },
  { service: "kmsV2", method: "Encrypt", request: { plaintext: "bytes", uid: "string" } },
  {
    service: "kmsV2",
    method: "Decrypt",
    request: {
      ciphertext: "bytes",
      uid: "string",
      key_id: "string",
      annotations: { map: "bytes" },
    },
  },
  { service: "kmsV1", method: "Version", request: { version: "string" } },
  { service: "kmsV1", method: "Encrypt", request: { version: "string", plain: "bytes" } },
  { service: "kmsV1", method: "Decrypt", request: { version: "string", cipher: "bytes" } },
  { service: "health", method: "Check", request: { service: "string" } },
  { service: "health", method: "Watch", request: { service: "string" } },
  { service: "field", method: "Seal", request: { records: { list: PLAIN_RECORD }, uid: "string" } },
  {
    service: "field",
    method: "Open",
    request: { records: { list: SEALED_RECORD }, uid: "string" },
  },
  {
    service: "field",
    method: "Lookup",
    request: {
      workspace: "string",
      resource: "string",
      field: "string",
      normalizers: { list: "string" },
      values: { list: "bytes" },
      uid: "string",
    },
  },
];

function definitionOf(service: ServiceName, method: string): Definition {
  return (services[service].service as unknown as Record<string, Definition>)[method] as Definition;
}

function assertScalar(value: unknown, shape: "string" | "bytes", path: string): void {
  if (shape === "bytes") assert.ok(Buffer.isBuffer(value), `${path} is not a Buffer`);
  else assert.equal(typeof value, "string", `${path} is not a string`);
}

/** A decoded request holds exactly the declared fields, each of its declared type. */
function assertShape(value: unknown, shapes: Shapes, path = "request"): void {
  assert.ok(typeof value === "object" && value !== null, `${path} is not an object`);
  assert.deepEqual(Object.keys(value).sort(), Object.keys(shapes).sort(), `${path} fields`);
  for (const [name, shape] of Object.entries(shapes)) {
    const field = (value as Record<string, unknown>)[name];
    const at = `${path}.${name}`;
    if (typeof shape === "string") assertScalar(field, shape, at);
    else if ("list" in shape) {
      assert.ok(Array.isArray(field), `${at} is not a list`);
      for (const [i, item] of field.entries()) {
        if (typeof shape.list === "string") assertScalar(item, shape.list, `${at}[${i}]`);
        else assertShape(item, shape.list, `${at}[${i}]`);
      }
    } else {
      assert.ok(typeof field === "object" && field !== null, `${at} is not a map`);
      for (const [key, item] of Object.entries(field))
        assertScalar(item, shape.map, `${at}.${key}`);
    }
  }
}

type Answer =
  | { kind: "undecodable" }
  | { kind: "answered"; responses: object[] }
  | { kind: "refused"; failure: CallFailure };

function isRaw(handler: ServiceHandlers[string]): handler is RawHandler {
  return typeof handler === "object" && "raw" in handler;
}

/** A response stream that records what the handler writes; close() ends it like a peer would. */
function recordingStream(): ResponseStream & { writes: object[]; close(): void } {
  const listeners: (() => void)[] = [];
  let open = true;
  const close = () => {
    if (!open) return;
    open = false;
    for (const listener of listeners.splice(0)) listener();
  };
  return {
    writes: [],
    write(message) {
      if (open) this.writes.push(message);
    },
    end: close,
    onClose: (listener) => {
      if (open) listeners.push(listener);
      else listener();
    },
    close,
  };
}

/**
 * One call as GrpcServer dispatches it (raw handlers get the bytes; the others the decoded
 * request, and their answer is serialized). Every failure must be a KmsEnvelopeError whose
 * status is not INTERNAL; whatever the handler returns must serialize.
 */
async function call(
  daemon: Daemon,
  service: ServiceName,
  method: string,
  message: Uint8Array,
): Promise<Answer> {
  const definition = definitionOf(service, method);
  const handler = daemon.handlers[service][method];
  assert.ok(handler !== undefined, `no handler for ${service}.${method}`);
  const bytes = Buffer.from(message);
  try {
    if (isRaw(handler)) {
      const outcome = await handler.raw(bytes);
      if (outcome.error !== undefined) throw outcome.error;
      assert.ok(outcome.response !== undefined, "a raw handler answered nothing");
      return {
        kind: "answered",
        responses: [definition.responseDeserialize(Buffer.from(outcome.response))],
      };
    }
    let request: object;
    try {
      request = definition.requestDeserialize(bytes);
    } catch {
      return { kind: "undecodable" };
    }
    const spec = METHODS.find((entry) => entry.service === service && entry.method === method);
    assertShape(request, spec?.request ?? {});
    if (definition.responseStream) {
      const stream = recordingStream();
      try {
        await (handler as (request: object, stream: ResponseStream) => unknown)(request, stream);
      } finally {
        stream.close();
      }
      for (const write of stream.writes) definition.responseSerialize(write);
      return { kind: "answered", responses: stream.writes };
    }
    const response = await (handler as (request: object) => object | Promise<object>)(request);
    return {
      kind: "answered",
      responses: [definition.responseDeserialize(definition.responseSerialize(response))],
    };
  } catch (error) {
    // Rethrown as is, so the report shows the untyped error and its stack.
    if (!(error instanceof KmsEnvelopeError)) throw error;
    const failure = toCallFailure(error);
    assert.equal(failure.unexpected, false);
    assert.notEqual(failure.code, status.INTERNAL, `${error.code} maps to INTERNAL`);
    return { kind: "refused", failure };
  }
}

/**
 * protobufjs decodes a map entry that omits its bytes value (legal protobuf: the default) as
 * [] rather than empty bytes. The field service turns those into empty values before sealing
 * (tested below); KMS v2 Decrypt's annotations are never read by the daemon, so such requests
 * are left out of the shape check rather than normalised for nothing.
 */
function omitsAnnotationValue(definition: Definition, message: Uint8Array): boolean {
  let request: { annotations?: object };
  try {
    request = definition.requestDeserialize(Buffer.from(message));
  } catch {
    return false;
  }
  return Object.values(request.annotations ?? {}).some((value) => Array.isArray(value));
}

const daemonState = fc.boolean().map((ok) => () => (ok ? healthy : suspended));

const names = fc.oneof(
  fc.string({ maxLength: 12 }),
  fc.string({ unit: "binary", maxLength: 8 }),
  fc.constantFrom("", "x".repeat(1025), "é".repeat(513), ...PROTOTYPE_NAMES),
);
const nonces = fc.uint8Array({ minLength: 24, maxLength: 24 });

// KMS ciphertexts: sealed under either loaded version for either API, or not at all.
const kmsCiphertexts = fc.oneof(
  fc
    .tuple(
      fc.constantFrom(0, 1),
      fc.constantFrom(KMS_V1_CONTEXT, KMS_V2_CONTEXT),
      fc.uint8Array({ maxLength: 64 }),
      nonces,
    )
    .chain(([version, context, plaintext, nonce]) => {
      const keyId = keys.keyIds[version] as string;
      const workspaceKey = keys.version(keyId).workspaceKey(WORKSPACE);
      const valid = encodeKmsCiphertext(keyId, seal(workspaceKey, context, plaintext, nonce));
      return fc.oneof(fc.constant(valid), mutationOf(valid));
    }),
  fc.uint8Array({ maxLength: 120 }),
);

const annotations = fc.dictionary(
  fc.oneof(fc.string({ maxLength: 20 }), fc.constantFrom(...PROTOTYPE_NAMES)),
  fc.uint8Array({ maxLength: 16 }),
  { maxKeys: 3 },
);

// Field names: the proto map key "__proto__" has its own test below.
const fieldNames = fc.oneof(
  fc.string({ maxLength: 10 }),
  fc.constantFrom("", "x".repeat(1025), ...PROTOTYPE_NAMES.filter((name) => name !== "__proto__")),
);

const record = fc.record({ workspace: names, resource: names, record_id: names });

const sealedFieldValue = (
  identity: { workspace: string; resource: string; record_id: string },
  field: string,
): fc.Arbitrary<string> =>
  fc
    .tuple(fc.constantFrom(0, 1), fc.uint8Array({ maxLength: 40 }), nonces)
    .chain(([version, plaintext, nonce]) => {
      const keyId = keys.keyIds[version] as string;
      const fits = [identity.resource, field, identity.record_id].every(
        (name) => Buffer.byteLength(name) <= 0xffff,
      );
      if (!fits) return fc.string();
      const value = formatFieldValue(
        keyId,
        seal(
          keys.version(keyId).workspaceKey(identity.workspace),
          fieldContext(identity.resource, field, identity.record_id),
          plaintext,
          nonce,
        ),
      );
      return fc.oneof(fc.constant(value), textMutationOf(value), fc.string({ maxLength: 60 }));
    });

/** Requests of each method with hostile but well-typed content, before serialization. */
const REQUESTS: Record<string, fc.Arbitrary<object>> = {
  "kmsV2.Status": fc.constant({}),
  "kmsV2.Encrypt": fc.record({ plaintext: fc.uint8Array({ maxLength: 300 }), uid: fc.string() }),
  "kmsV2.Decrypt": fc.record({
    ciphertext: kmsCiphertexts,
    uid: fc.string(),
    key_id: fc.oneof(fc.constantFrom(primaryKeyId, olderKeyId, ""), fc.string({ maxLength: 30 })),
    annotations,
  }),
  "kmsV1.Version": fc.record({ version: fc.string() }),
  "kmsV1.Encrypt": fc.record({
    version: fc.oneof(fc.constantFrom("v1beta1", "", "v2"), fc.string()),
    plain: fc.uint8Array({ maxLength: 300 }),
  }),
  "kmsV1.Decrypt": fc.record({
    version: fc.oneof(fc.constantFrom("v1beta1", ""), fc.string()),
    cipher: kmsCiphertexts,
  }),
  "health.Check": fc.record({
    service: fc.oneof(
      fc.constantFrom("", ...SERVED),
      fc.string(),
      fc.constantFrom(...PROTOTYPE_NAMES),
    ),
  }),
  "health.Watch": fc.record({
    service: fc.oneof(
      fc.constantFrom("", ...SERVED),
      fc.string(),
      fc.constantFrom(...PROTOTYPE_NAMES),
    ),
  }),
  "field.Seal": fc.record({
    records: fc.array(
      fc.record({
        workspace: names,
        resource: names,
        record_id: names,
        fields: fc.dictionary(fieldNames, fc.uint8Array({ maxLength: 40 }), { maxKeys: 4 }),
      }),
      { maxLength: 4 },
    ),
    uid: fc.string(),
  }),
  "field.Open": fc.record({
    records: fc.array(
      record.chain((identity) =>
        fc.uniqueArray(fieldNames, { maxLength: 4 }).chain((fields) =>
          fc.tuple(...fields.map((field) => sealedFieldValue(identity, field))).map((values) => ({
            ...identity,
            fields: Object.fromEntries(fields.map((field, i) => [field, values[i]])),
          })),
        ),
      ),
      { maxLength: 4 },
    ),
    uid: fc.string(),
  }),
  "field.Lookup": fc.record({
    workspace: names,
    resource: names,
    field: fieldNames,
    normalizers: fc.array(
      fc.oneof(fc.constantFrom(...NORMALIZERS), fc.constantFrom("", "NFC", ...PROTOTYPE_NAMES)),
      { maxLength: 4 },
    ),
    values: fc.array(
      fc.oneof(
        fc.string({ maxLength: 20 }).map((text) => Buffer.from(text)),
        fc.uint8Array({ maxLength: 20 }),
      ),
      { maxLength: 10 },
    ),
    uid: fc.string(),
  }),
};

describe("fuzz: daemon request decoding and handlers (every KMS v2, KMS v1beta1, field and health method)", () => {
  for (const { service, method } of METHODS) {
    const definition = definitionOf(service, method);
    const name = `${service}.${method}`;

    it(`${name}: arbitrary bytes and protobuf wire messages either fail to decode or get an answer or a typed, non-INTERNAL refusal`, async () => {
      await fc.assert(
        fc.asyncProperty(
          daemonState,
          fc.oneof(fc.uint8Array({ maxLength: 200 }), protobufMessage),
          async (daemon, message) => {
            fc.pre(!omitsAnnotationValue(definition, message));
            await call(daemon(), service, method, message);
          },
        ),
        runs(150),
      );
    });

    it(`${name}: hostile well-typed requests, serialized and mutated, get an answer or a typed, non-INTERNAL refusal`, async () => {
      const requests = REQUESTS[name] as fc.Arbitrary<object>;
      const serialized = requests.map((request) => definition.requestSerialize(request));
      await fc.assert(
        fc.asyncProperty(
          daemonState,
          fc.oneof(
            serialized,
            serialized.chain((bytes) => mutationOf(bytes)),
          ),
          async (daemon, message) => {
            fc.pre(!omitsAnnotationValue(definition, message));
            await call(daemon(), service, method, message);
          },
        ),
        runs(150),
      );
    });
  }

  it("KMS v2 Decrypt answers exactly the sealed plaintext for an untouched ciphertext and its key_id, and refuses every mutation", async () => {
    const definition = definitionOf("kmsV2", "Decrypt");
    const cases = fc
      .tuple(fc.constantFrom(0, 1), fc.uint8Array({ maxLength: 64 }), nonces)
      .chain(([version, plaintext, nonce]) => {
        const keyId = keys.keyIds[version] as string;
        const workspaceKey = keys.version(keyId).workspaceKey(WORKSPACE);
        const ciphertext = encodeKmsCiphertext(
          keyId,
          seal(workspaceKey, KMS_V2_CONTEXT, plaintext, nonce),
        );
        return fc
          .option(mutationOf(ciphertext), { freq: 2 })
          .map((mutant) => ({ keyId, plaintext, ciphertext, sent: mutant ?? ciphertext }));
      });
    await fc.assert(
      fc.asyncProperty(cases, async ({ keyId, plaintext, ciphertext, sent }) => {
        const request = definition.requestSerialize({ ciphertext: sent, uid: "u", key_id: keyId });
        const answer = await call(healthy, "kmsV2", "Decrypt", request);
        const untouched = Buffer.from(sent).equals(ciphertext);
        assert.equal(answer.kind, untouched ? "answered" : "refused");
        if (answer.kind === "answered") {
          assert.deepEqual(answer.responses, [{ plaintext: Buffer.from(plaintext) }]);
        }
      }),
      runs(300),
    );
  });

  it("field Open answers exactly the sealed plaintexts for untouched values and refuses any changed one", async () => {
    const definition = definitionOf("field", "Open");
    const identity = { workspace: "ws", resource: "users.obot.obot.ai", record_id: "u-1" };
    const cases = fc.tuple(fc.uint8Array({ maxLength: 40 }), nonces).chain(([plaintext, nonce]) => {
      const value = formatFieldValue(
        primaryKeyId,
        seal(
          keys.primary.workspaceKey(identity.workspace),
          fieldContext(identity.resource, "email", identity.record_id),
          plaintext,
          nonce,
        ),
      );
      return fc
        .option(textMutationOf(value), { freq: 2 })
        .map((mutant) => ({ plaintext, value, sent: mutant ?? value }));
    });
    await fc.assert(
      fc.asyncProperty(cases, async ({ plaintext, value, sent }) => {
        const request = definition.requestSerialize({
          records: [{ ...identity, fields: { email: sent } }],
          uid: "u",
        });
        const answer = await call(healthy, "field", "Open", request);
        assert.equal(answer.kind, sent === value ? "answered" : "refused");
        if (answer.kind === "answered") {
          const [response] = answer.responses as { records: { fields: object }[] }[];
          assert.deepEqual(response?.records[0]?.fields, { email: Buffer.from(plaintext) });
        }
      }),
      runs(300),
    );
  });

  it("field Seal answers one sealed value for every field it was sent, or refuses the batch", async () => {
    await fc.assert(
      fc.asyncProperty(REQUESTS["field.Seal"] as fc.Arbitrary<SealShape>, async (request) => {
        const message = definitionOf("field", "Seal").requestSerialize(request);
        const answer = await call(healthy, "field", "Seal", message);
        if (answer.kind !== "answered") return;
        const [response] = answer.responses as SealShape[];
        assert.deepEqual(
          response?.records.map((sealed) => Object.keys(sealed.fields).sort()),
          request.records.map((sent) => Object.keys(sent.fields).sort()),
        );
      }),
      runs(200),
    );
  });

  it("field Lookup answers, for every value, one token per loaded key version, primary first, or refuses the batch", async () => {
    let answered = 0;
    await fc.assert(
      fc.asyncProperty(REQUESTS["field.Lookup"] as fc.Arbitrary<LookupShape>, async (request) => {
        const message = definitionOf("field", "Lookup").requestSerialize(request);
        const answer = await call(healthy, "field", "Lookup", message);
        if (answer.kind !== "answered") return;
        answered += 1;
        const [response] = answer.responses as {
          values: { tokens: string[] }[];
          key_id: string;
        }[];
        assert.equal(response?.key_id, primaryKeyId);
        assert.equal(response?.values.length, request.values.length);
        for (const { tokens } of response?.values ?? []) {
          assert.deepEqual(
            tokens.map((token) => parseLookupToken(token).keyId),
            [primaryKeyId, olderKeyId],
          );
        }
      }),
      runs(200),
    );
    assert.ok(answered > 0, "no generated request was valid: the property checked nothing");
  });

  it('field Seal answers a sealed value for a field named "__proto__"', async () => {
    const request = {
      records: [
        { workspace: "w", resource: "r", record_id: "1", fields: {} as Record<string, Buffer> },
      ],
      uid: "u",
    };
    Object.defineProperty(request.records[0]?.fields, "__proto__", {
      value: Buffer.from("secret"),
      enumerable: true,
    });
    const answer = await call(
      healthy,
      "field",
      "Seal",
      definitionOf("field", "Seal").requestSerialize(request),
    );
    assert.equal(answer.kind, "answered");
    const [response] = answer.responses as SealShape[];
    assert.deepEqual(Object.keys(response?.records[0]?.fields ?? {}), ["__proto__"]);
  });

  it("field Seal seals an empty value for a map entry that omits its bytes value (protobuf default)", async () => {
    // records { workspace "w", resource "r", record_id "1", fields { key "a" } }: no value field.
    const record = [10, 1, 119, 18, 1, 114, 26, 1, 49, 34, 3, 10, 1, 97];
    const answer = await call(
      healthy,
      "field",
      "Seal",
      Uint8Array.from([10, record.length, ...record]),
    );
    assert.equal(answer.kind, "answered");
  });
});

interface LookupShape {
  values: Uint8Array[];
}

interface SealShape {
  records: { workspace: string; resource: string; record_id: string; fields: object }[];
}
