import { parseFieldValue } from "../crypto/field-value.js";
import type { KmsProviderHealth, ResourceTransformers } from "../engine/encryption-engine.js";
import type { Writer } from "../engine/transformers/transformer.js";
import {
  ConfigError,
  InvalidRequestError,
  KmsEnvelopeError,
  MalformedCiphertextError,
} from "../errors.js";
import { openEngineFields, sealEngineFields } from "./engine-fields.js";
import type { EngineWorkers } from "./engine-workers.js";
import type {
  FieldCodec,
  FieldRecord,
  FieldRoute,
  FieldStamp,
  JsonObject,
  JsonValue,
  LookupToken,
  OpenedRecord,
  SealedRecord,
} from "./field-codec.js";
import { asJson, bytesToValue, type FieldPlaintext, valueToBytes } from "./field-encoding.js";
import type { FieldMap, FieldType, ResourceFields } from "./field-map.js";
import { getPath, withPaths } from "./field-paths.js";
import type { FieldServiceClient } from "./field-service-client.js";
import { UnmappedResourceError } from "./unmapped-resource.js";

/** The document with its fields replaced; the document itself when there are none. */
function withReplaced(document: JsonObject, replaced: readonly [string, JsonValue][]): JsonObject {
  return replaced.length === 0 ? document : withPaths(document, replaced);
}

/** A route of `fieldMap` that cannot be served: what it goes through was not given. */
export function missingRoute(route: FieldRoute, fieldMap: string): ConfigError {
  return route === "engine"
    ? new ConfigError(
        "--encryption-config",
        `is missing, and ${fieldMap} routes resources through the engine`,
        "give the EncryptionConfiguration for them",
      )
    : new ConfigError(
        "--socket",
        `is missing, and ${fieldMap} routes resources through the field service`,
        "give the kms-envelope daemon socket",
      );
}

const FIELD_SERVICE = "field-service";

/** The stamp of a field the engine wrote or read. */
function engineStamp(path: string, writer: Writer): FieldStamp {
  return { path, route: "engine", provider: writer.provider, keyId: writer.keyId };
}

/** One field of one record, as the routes see it: its plaintext bytes or its stored text. */
interface FieldItem<Value> {
  readonly record: number;
  readonly path: string;
  readonly type: FieldType;
  readonly where: string;
  readonly value: Value;
}

type PlainItem = FieldItem<Uint8Array>;
type StoredItem = FieldItem<string>;

/** A listed field's value as stored: text, or the record was not sealed. */
function storedText(value: FieldPlaintext, _type: FieldType, where: string): string {
  if (typeof value !== "string")
    throw new MalformedCiphertextError(
      `${where} is not stored ciphertext text; was the record sealed?`,
    );
  return value;
}

/**
 * Encrypts the fields a field map lists, per resource, through the in-process engine
 * (Kubernetes formats, stored as base64) or the daemon's field service (`kmse:v1:` values).
 * Unlisted fields are never touched; null and absent listed fields stay as they are; an
 * empty string is encrypted like any other value. A resource the map does not list is refused
 * (`UNMAPPED_RESOURCE`) unless `allowUnmapped`, so a mistyped name cannot store plaintext; an
 * entry with no fields passes its records through unchanged.
 *
 * @remarks
 * Engine fields are bound to `<resource>/<field path>/<record id>` as authenticated data;
 * field-service fields to resource, field, record id and workspace by the daemon. One
 * field-service call per seal or open batch. Calls may run concurrently; errors never carry
 * field values or keys. Get one from {@link openFieldLayer}.
 */
export interface FieldLayer extends FieldCodec {
  /** The field map this layer applies (e.g. its plaintextChecked paths for the guard). */
  readonly fieldMap: FieldMap;

  /**
   * Health of the engine's kms providers, in configuration order, as of their last check;
   * `[]` when the map routes nothing through the engine. The daemon behind field-service
   * fields reports on its own probe port. See {@link engineHealth}.
   */
  health(): KmsProviderHealth[];

  /**
   * Encrypts one value of a listed field; bytes fields take a Uint8Array (or standard base64
   * text).
   *
   * @param resource - The resource as the field map names it.
   * @param path - One of its encrypted field paths.
   * @param record - The record the value belongs to: its id, and its workspace for
   * field-service fields.
   * @param value - The plaintext; must match the field's type.
   * @returns The text to store and its stamp.
   * @throws `UNMAPPED_RESOURCE`; `INVALID_REQUEST` when the map lists no such encrypted field,
   * the value has the wrong type or the workspace is missing; `INVALID_CONFIG` and
   * `KMS_PLUGIN_FAILED` as for seal.
   */
  sealValue(
    resource: string,
    path: string,
    record: { id: string; workspace?: string },
    value: FieldPlaintext,
  ): Promise<{ text: string; stamp: FieldStamp }>;

  /**
   * Decrypts one stored value of a listed field; bytes fields come back as a Uint8Array,
   * string fields as a string, json fields as the JSON value.
   *
   * @param resource - The resource as the field map names it.
   * @param path - One of its encrypted field paths.
   * @param record - The record the value was sealed for: its id, and its workspace for
   * field-service fields.
   * @param text - The stored text.
   * @returns The value, whether it should be rewrapped, and who wrote it.
   * @throws As for open, and `INVALID_REQUEST` when the map lists no such encrypted field.
   */
  openValue(
    resource: string,
    path: string,
    record: { id: string; workspace?: string },
    text: string,
  ): Promise<{ value: FieldPlaintext; stale: boolean; stamp: FieldStamp }>;
}

/** The FieldLayer over a field map, the engine and the daemon's field service. */
export class MapFieldLayer implements FieldLayer {
  readonly #map: FieldMap;
  readonly #engine: ResourceTransformers | undefined;
  readonly #fieldService: FieldServiceClient | undefined;
  readonly #allowUnmapped: boolean;
  readonly #workers: EngineWorkers | undefined;

  // Applications get a field layer from openFieldLayer.
  constructor(options: {
    fieldMap: FieldMap;
    engine?: ResourceTransformers;
    fieldService?: FieldServiceClient;
    /** Worker threads for large engine batches; the layer closes them. */
    workers?: EngineWorkers;
    /** Pass records of resources the map does not list through unchanged instead of refusing them. */
    allowUnmapped?: boolean;
  }) {
    this.#map = options.fieldMap;
    this.#engine = options.engine;
    this.#fieldService = options.fieldService;
    this.#allowUnmapped = options.allowUnmapped === true;
    this.#workers = options.workers;
    for (const spec of this.#map.resources.values()) {
      if (spec.route === "engine") this.#needEngine();
      else if (spec.route === "field-service") this.#needService();
    }
  }

  get fieldMap(): FieldMap {
    return this.#map;
  }

  health(): KmsProviderHealth[] {
    return this.#engine?.health() ?? [];
  }

  /**
   * The encrypted field paths the map lists for a resource, in map order; `[]` for a resource
   * it does not list or lists with no fields. Never throws: rewrap asks it about stored
   * resources the map no longer lists.
   */
  encryptedPaths(resource: string): readonly string[] {
    return [...(this.#map.resources.get(resource)?.fields.keys() ?? [])];
  }

  /**
   * The fields the map declares a lookup for on a resource, in map order; `[]` for a resource it
   * does not list. Never throws, like {@link FieldLayer.encryptedPaths}.
   */
  lookupPaths(resource: string): readonly string[] {
    return [...(this.#map.resources.get(resource)?.lookups.keys() ?? [])];
  }

  /**
   * Refuses a resource that seal and open would refuse.
   *
   * @throws {@link UnmappedResourceError} (`UNMAPPED_RESOURCE`) for a resource the map does
   * not list, unless the layer was opened with `allowUnmapped`.
   */
  checkResource(resource: string): void {
    this.#spec(resource);
  }

  /**
   * Encrypts the listed fields present in each record (null and absent fields stay as they are)
   * and stamps each one. Records of a resource listed with no fields, or unlisted under
   * `allowUnmapped`, come back unchanged with no stamps.
   *
   * @param resource - The resource as the field map names it.
   * @param records - Records to seal; their documents are never modified.
   * @returns One sealed record per input record, in order; all or nothing.
   * @throws `UNMAPPED_RESOURCE`; `INVALID_REQUEST` for a value of the wrong type (never
   * converted) or a field-service record without a workspace; `INVALID_CONFIG` when the
   * EncryptionConfiguration would write the resource with identity (no rule, or identity
   * first); `KMS_PLUGIN_FAILED` when a plugin or the daemon fails.
   */
  async seal(resource: string, records: readonly FieldRecord[]): Promise<SealedRecord[]> {
    const spec = this.#spec(resource);
    if (spec?.route === undefined)
      return records.map((record) => ({ id: record.id, document: record.document, stamps: [] }));
    const items: PlainItem[] = this.#items(resource, spec, records, valueToBytes);
    const [stored, tokens] = await Promise.all([
      this.#sealItems(resource, spec.route, records, items),
      this.#lookupTokens(resource, spec, records, items),
    ]);
    const replaced = records.map((): [string, JsonValue][] => []);
    const stamps = records.map((): FieldStamp[] => []);
    for (const [i, item] of items.entries()) {
      const result = stored[i] as { text: string; stamp: FieldStamp };
      replaced[item.record]?.push([item.path, result.text]);
      stamps[item.record]?.push(result.stamp);
    }
    return records.map((record, index) => ({
      id: record.id,
      document: withReplaced(record.document, replaced[index] as [string, JsonValue][]),
      stamps: stamps[index] as FieldStamp[],
      tokens: tokens[index] as LookupToken[],
    }));
  }

  async tokensFor(
    resource: string,
    path: string,
    workspace: string,
    value: string,
  ): Promise<string[]> {
    const normalizers = this.#spec(resource)?.lookups.get(path);
    if (normalizers === undefined)
      throw new InvalidRequestError(
        `${resource} ${path} has no lookup, so it cannot be searched: declare it in the field map as { type: string, lookup: [trim, lowercase] } (or the normalizers it needs), then run kms-envelope rewrap to compute the tokens of records already stored`,
      );
    if (workspace === "")
      throw new InvalidRequestError(
        `${resource}: a lookup needs the workspace to search (tokens are keyed per workspace)`,
      );
    const answer = await this.#needService().lookup({
      workspace,
      resource,
      field: path,
      normalizers,
      values: [value],
    });
    return answer.tokens[0] ?? [];
  }

  /**
   * Decrypts the listed fields present in each record, restoring each value's type (`bytes`
   * fields become standard base64 text in the document), and reports staleness per record.
   *
   * @param resource - The resource as the field map names it.
   * @param records - Records as stored; their documents are never modified.
   * @returns One opened record per input record, in order; all or nothing.
   * @throws `UNMAPPED_RESOURCE`; `MALFORMED_CIPHERTEXT` for a listed field that is not
   * ciphertext text of its route; `DECRYPTION_FAILED` when a value does not authenticate;
   * `UNKNOWN_KEY_ID` for a field-service value under a master-key version the daemon does not
   * hold (or has retired); `INVALID_REQUEST` when a value decrypts to something not of the
   * field's type, or a field-service record has no workspace; `KMS_PLUGIN_FAILED` when a
   * plugin or the daemon fails.
   */
  async open(resource: string, records: readonly FieldRecord[]): Promise<OpenedRecord[]> {
    const spec = this.#spec(resource);
    if (spec?.route === undefined)
      return records.map((record) => ({
        id: record.id,
        document: record.document,
        stale: false,
        stamps: [],
      }));
    const items: StoredItem[] = this.#items(resource, spec, records, storedText);
    const opened = await this.#openItems(resource, spec.route, records, items);
    const replaced = records.map((): [string, JsonValue][] => []);
    const stamps = records.map((): FieldStamp[] => []);
    const stale = records.map(() => false);
    for (const [i, item] of items.entries()) {
      const result = opened[i] as { bytes: Uint8Array; stale: boolean; stamp: FieldStamp };
      replaced[item.record]?.push([
        item.path,
        asJson(bytesToValue(result.bytes, item.type, item.where)),
      ]);
      stale[item.record] ||= result.stale;
      stamps[item.record]?.push(result.stamp);
    }
    return records.map((record, index) => ({
      id: record.id,
      document: withReplaced(record.document, replaced[index] as [string, JsonValue][]),
      stale: stale[index] as boolean,
      stamps: stamps[index] as FieldStamp[],
    }));
  }

  async sealValue(
    resource: string,
    path: string,
    record: { id: string; workspace?: string },
    value: FieldPlaintext,
  ): Promise<{ text: string; stamp: FieldStamp }> {
    const { route, type } = this.#field(resource, path);
    const where = `${resource} ${record.id} ${path}`;
    const item: PlainItem = {
      record: 0,
      path,
      type,
      where,
      value: valueToBytes(value, type, where),
    };
    const [result] = await this.#sealItems(resource, route, [record], [item]);
    return result as { text: string; stamp: FieldStamp };
  }

  async openValue(
    resource: string,
    path: string,
    record: { id: string; workspace?: string },
    text: string,
  ): Promise<{ value: FieldPlaintext; stale: boolean; stamp: FieldStamp }> {
    const { route, type } = this.#field(resource, path);
    const where = `${resource} ${record.id} ${path}`;
    const [result] = await this.#openItems(
      resource,
      route,
      [record],
      [{ record: 0, path, type, where, value: text }],
    );
    const { bytes, stale, stamp } = result as {
      bytes: Uint8Array;
      stale: boolean;
      stamp: FieldStamp;
    };
    return { value: bytesToValue(bytes, type, where), stale, stamp };
  }

  /**
   * The (provider, keyId) a field would be written with now: the engine rule's first
   * provider and key, or `field-service` and the daemon's primary key id (one Status call).
   *
   * @throws `UNMAPPED_RESOURCE`; `INVALID_REQUEST` when the map lists no such encrypted field;
   * `KMS_PLUGIN_FAILED` when a kms v2 plugin has no usable seed or the daemon does not answer.
   */
  async currentWriter(
    resource: string,
    path: string,
  ): Promise<Pick<FieldStamp, "provider" | "keyId">> {
    const { route } = this.#field(resource, path);
    if (route === "engine") return this.#needEngine().transformerFor(resource).currentWriter();
    return { provider: FIELD_SERVICE, keyId: await this.#needService().primaryKeyId() };
  }

  /**
   * Closes the engine (zeroing its keys), its worker threads and the connection to the
   * daemon; idempotent. Calls made afterwards fail.
   */
  async close(): Promise<void> {
    this.#engine?.close();
    this.#fieldService?.close();
    await this.#workers?.close();
  }

  /** The map's entry for a resource; undefined only for an unlisted one that is allowed. */
  #spec(resource: string): ResourceFields | undefined {
    const spec = this.#map.resources.get(resource);
    if (spec === undefined && !this.#allowUnmapped)
      throw new UnmappedResourceError(resource, [...this.#map.resources.keys()]);
    return spec;
  }

  #field(resource: string, path: string): { route: FieldRoute; type: FieldType } {
    const spec = this.#spec(resource);
    const type = spec?.fields.get(path);
    if (spec?.route === undefined || type === undefined)
      throw new InvalidRequestError(
        `the field map lists no encrypted field ${path} for ${resource}`,
      );
    return { route: spec.route, type };
  }

  /**
   * Listed fields present in each record, their values made what the route takes; null and
   * absent fields are left as they are.
   */
  #items<Value>(
    resource: string,
    spec: ResourceFields,
    records: readonly FieldRecord[],
    take: (value: FieldPlaintext, type: FieldType, where: string) => Value,
  ): FieldItem<Value>[] {
    const items: FieldItem<Value>[] = [];
    for (const [record, { id, document }] of records.entries())
      for (const [path, type] of spec.fields) {
        const found = getPath(document, path);
        if (found === undefined || found === null) continue;
        const where = `${resource} ${id} ${path}`;
        items.push({ record, path, type, where, value: take(found, type, where) });
      }
    return items;
  }

  /**
   * The primary-version token of each present lookup field, per record: one Lookup call per
   * workspace and field in the batch (a call is about one of each). Only the primary token is
   * kept: a search asks for every version's tokens, so older ones need not be stored.
   */
  async #lookupTokens(
    resource: string,
    spec: ResourceFields,
    records: readonly FieldRecord[],
    items: readonly PlainItem[],
  ): Promise<LookupToken[][]> {
    const tokens = records.map((): LookupToken[] => []);
    const groups = new Map<string, { workspace: string; path: string; items: PlainItem[] }>();
    for (const item of items) {
      if (!spec.lookups.has(item.path)) continue;
      const workspace = (records[item.record] as FieldRecord).workspace ?? "";
      const key = JSON.stringify([workspace, item.path]);
      const group = groups.get(key) ?? { workspace, path: item.path, items: [] };
      group.items.push(item);
      groups.set(key, group);
    }
    // Seal refuses records without a workspace at once; so does this, before any call.
    if (groups.size === 0 || [...groups.values()].some((group) => group.workspace === ""))
      return tokens;
    await Promise.all(
      [...groups.values()].map(async ({ workspace, path, items: grouped }) => {
        const answer = await this.#needService().lookup({
          workspace,
          resource,
          field: path,
          normalizers: spec.lookups.get(path) ?? [],
          // A lookup field is a string field, and seal has checked the value is a string.
          values: grouped.map((item) => Buffer.from(item.value).toString("utf8")),
        });
        for (const [index, item] of grouped.entries()) {
          const token = answer.tokens[index]?.[0];
          if (token === undefined)
            throw new KmsEnvelopeError(
              "DAEMON_UNREACHABLE",
              `the daemon answered Lookup for ${resource} ${path} without a token for every value; check that the socket is a kms-envelope daemon of this version`,
            );
          tokens[item.record]?.push({ path, token });
        }
      }),
    );
    return tokens;
  }

  async #sealItems(
    resource: string,
    route: FieldRoute,
    records: readonly { id: string; workspace?: string }[],
    items: readonly PlainItem[],
  ): Promise<{ text: string; stamp: FieldStamp }[]> {
    if (route === "engine") {
      const transformer = this.#needEngine().transformerFor(resource);
      // A field the map calls sensitive must never be written by identity: that is what a
      // missing or mistyped EncryptionConfiguration rule (or identity listed first) does.
      if (items.length > 0 && transformer.currentWriter().provider === "identity")
        throw new ConfigError(
          `EncryptionConfiguration rule for ${JSON.stringify(resource)}`,
          "writes it with identity (no rule matches it, or identity comes first), so its encrypted fields would be stored in the clear",
          "add a rule for it whose first provider encrypts, or list it in the field map with no fields to store it in the clear on purpose",
        );
      const recordId = (item: PlainItem) => (records[item.record] as { id: string }).id;
      const workers = this.#workers;
      const sealed = workers?.takes(items.length)
        ? await workers.seal(
            resource,
            items.map((item) => ({ path: item.path, value: item.value, recordId: recordId(item) })),
          )
        : await sealEngineFields(transformer, resource, items, recordId);
      return sealed.map((done, i) => ({
        text: done.text,
        // Named, not spread: this runs once per field.
        stamp: engineStamp((items[i] as PlainItem).path, done.writer),
      }));
    }
    const answer = await this.#needService().seal(resource, this.#batch(resource, records, items));
    return items.map((item) => ({
      text: answer.records[item.record]?.fields[item.path] as string,
      stamp: {
        path: item.path,
        route: "field-service",
        provider: FIELD_SERVICE,
        keyId: answer.keyId,
      },
    }));
  }

  async #openItems(
    resource: string,
    route: FieldRoute,
    records: readonly { id: string; workspace?: string }[],
    items: readonly StoredItem[],
  ): Promise<{ bytes: Uint8Array; stale: boolean; stamp: FieldStamp }[]> {
    if (route === "engine") {
      // Resolved once per batch: every field of it belongs to the one resource.
      const transformer = this.#needEngine().transformerFor(resource);
      const recordId = (item: StoredItem) => (records[item.record] as { id: string }).id;
      const workers = this.#workers;
      const opened = workers?.takes(items.length)
        ? await workers.open(
            resource,
            items.map((item) => ({
              path: item.path,
              value: item.value,
              where: item.where,
              recordId: recordId(item),
            })),
          )
        : await openEngineFields(transformer, resource, items, recordId);
      return opened.map((done, i) => ({
        bytes: done.bytes,
        stale: done.stale,
        stamp: engineStamp((items[i] as StoredItem).path, done.writer),
      }));
    }
    const service = this.#needService();
    const keyIds = items.map((item) => parseFieldValue(item.value).keyId);
    const answer = await service.open(resource, this.#batch(resource, records, items));
    // The daemon says whether anything in the batch was stale, and (since OpenResponse.key_id)
    // its primary key id; the key ids say which fields. An older daemon leaves key_id empty.
    const primary = answer.stale ? answer.keyId || (await service.primaryKeyId()) : undefined;
    return items.map((item, i) => {
      const keyId = keyIds[i] as string;
      return {
        bytes: answer.records[item.record]?.fields[item.path] ?? new Uint8Array(),
        stale: primary !== undefined && keyId !== primary,
        stamp: { path: item.path, route: "field-service", provider: FIELD_SERVICE, keyId },
      };
    });
  }

  /** One field-service record per input record, holding its items' values. */
  #batch<Value>(
    resource: string,
    records: readonly { id: string; workspace?: string }[],
    items: readonly FieldItem<Value>[],
  ) {
    const batch = records.map((record) => {
      if (record.workspace === undefined || record.workspace === "")
        throw new InvalidRequestError(
          `${resource} ${record.id}: fields sealed by the field service need a workspace (--workspace)`,
        );
      return {
        workspace: record.workspace,
        recordId: record.id,
        fields: {} as Record<string, Value>,
      };
    });
    for (const item of items)
      (batch[item.record] as { fields: Record<string, Value> }).fields[item.path] = item.value;
    return batch;
  }

  #needEngine(): ResourceTransformers {
    if (this.#engine === undefined) throw missingRoute("engine", "the field map");
    return this.#engine;
  }

  #needService(): FieldServiceClient {
    if (this.#fieldService === undefined) throw missingRoute("field-service", "the field map");
    return this.#fieldService;
  }
}
