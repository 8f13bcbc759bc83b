import { decodeCanonicalBase64 } from "../crypto/canonical-base64.js";
import { parseFieldValue } from "../crypto/field-value.js";
import type { ResourceTransformers } from "../engine/encryption-engine.js";
import { ConfigError, InvalidRequestError, MalformedCiphertextError } from "../errors.js";
import type {
  FieldCodec,
  FieldRecord,
  FieldRoute,
  FieldStamp,
  JsonObject,
  OpenedRecord,
  SealedRecord,
} from "./field-codec.js";
import { asJson, bytesToValue, type FieldPlaintext, valueToBytes } from "./field-encoding.js";
import type { FieldMap, FieldType, ResourceFields } from "./field-map.js";
import { getPath, withPath } from "./field-paths.js";
import type { FieldServiceClient } from "./field-service-client.js";
import { UnmappedResourceError } from "./unmapped-resource.js";

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

/** Authenticated data binding an engine-encrypted value to its place (the field map README section). */
function fieldAuthenticatedData(resource: string, path: string, recordId: string): Uint8Array {
  return Buffer.from(`${resource}/${path}/${recordId}`, "utf8");
}

/** One field of one record, as the routes see it. */
interface FieldItem {
  readonly record: number;
  readonly path: string;
  readonly type: FieldType;
  readonly where: string;
}

interface PlainItem extends FieldItem {
  readonly bytes: Uint8Array;
}

interface StoredItem extends FieldItem {
  readonly text: string;
}

/**
 * Encrypts the fields a field map lists, per resource, through the in-process engine
 * (Kubernetes formats, stored as base64) or the daemon's field service (`kmse:v1:` values).
 * Unlisted fields are never touched; null and absent listed fields stay as they are; an
 * empty string is encrypted like any other value. A resource the map does not list is refused
 * (UNMAPPED_RESOURCE) unless `allowUnmapped`, so a mistyped name cannot store plaintext; an
 * entry with no fields passes its records through unchanged.
 */
export class FieldLayer implements FieldCodec {
  readonly #map: FieldMap;
  readonly #engine: ResourceTransformers | undefined;
  readonly #fieldService: FieldServiceClient | undefined;
  readonly #allowUnmapped: boolean;

  /** @internal Applications get a field layer from openFieldLayer. */
  constructor(options: {
    fieldMap: FieldMap;
    engine?: ResourceTransformers;
    fieldService?: FieldServiceClient;
    /** Pass records of resources the map does not list through unchanged instead of refusing them. */
    allowUnmapped?: boolean;
  }) {
    this.#map = options.fieldMap;
    this.#engine = options.engine;
    this.#fieldService = options.fieldService;
    this.#allowUnmapped = options.allowUnmapped === true;
    for (const spec of this.#map.resources.values()) {
      if (spec.route === "engine") this.#needEngine();
      else if (spec.route === "field-service") this.#needService();
    }
  }

  /** The field map this layer applies (e.g. its plaintextChecked paths for the guard). */
  get fieldMap(): FieldMap {
    return this.#map;
  }

  // A query, not a use: rewrap asks it about stored resources the map no longer lists.
  encryptedPaths(resource: string): readonly string[] {
    return [...(this.#map.resources.get(resource)?.fields.keys() ?? [])];
  }

  checkResource(resource: string): void {
    this.#spec(resource);
  }

  async seal(resource: string, records: readonly FieldRecord[]): Promise<SealedRecord[]> {
    const spec = this.#spec(resource);
    if (spec?.route === undefined)
      return records.map((record) => ({ id: record.id, document: record.document, stamps: [] }));
    const items: PlainItem[] = this.#items(resource, spec, records).map(({ value, ...item }) => ({
      ...item,
      bytes: valueToBytes(value, item.type, item.where),
    }));
    const stored = await this.#sealItems(resource, spec.route, records, items);
    const documents = records.map((record) => record.document);
    const stamps = records.map((): FieldStamp[] => []);
    for (const [i, item] of items.entries()) {
      const result = stored[i] as { text: string; stamp: FieldStamp };
      documents[item.record] = withPath(
        documents[item.record] as JsonObject,
        item.path,
        result.text,
      );
      stamps[item.record]?.push(result.stamp);
    }
    return records.map((record, index) => ({
      id: record.id,
      document: documents[index] as JsonObject,
      stamps: stamps[index] as FieldStamp[],
    }));
  }

  async open(resource: string, records: readonly FieldRecord[]): Promise<OpenedRecord[]> {
    const spec = this.#spec(resource);
    if (spec?.route === undefined)
      return records.map((record) => ({
        id: record.id,
        document: record.document,
        stale: false,
        stamps: [],
      }));
    const items: StoredItem[] = this.#items(resource, spec, records).map(({ value, ...item }) => {
      if (typeof value !== "string")
        throw new MalformedCiphertextError(
          `${item.where} is not stored ciphertext text; was the record sealed?`,
        );
      return { ...item, text: value };
    });
    const opened = await this.#openItems(resource, spec.route, records, items);
    const documents = records.map((record) => record.document);
    const stamps = records.map((): FieldStamp[] => []);
    const stale = records.map(() => false);
    for (const [i, item] of items.entries()) {
      const result = opened[i] as { bytes: Uint8Array; stale: boolean; stamp: FieldStamp };
      const value = asJson(bytesToValue(result.bytes, item.type, item.where));
      documents[item.record] = withPath(documents[item.record] as JsonObject, item.path, value);
      stale[item.record] ||= result.stale;
      stamps[item.record]?.push(result.stamp);
    }
    return records.map((record, index) => ({
      id: record.id,
      document: documents[index] as JsonObject,
      stale: stale[index] as boolean,
      stamps: stamps[index] as FieldStamp[],
    }));
  }

  /** Encrypts one value of a listed field; bytes fields take a Uint8Array. */
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
      bytes: valueToBytes(value, type, where),
    };
    const [result] = await this.#sealItems(resource, route, [record], [item]);
    return result as { text: string; stamp: FieldStamp };
  }

  /** Decrypts one stored value of a listed field; bytes fields come back as a Uint8Array. */
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
      [{ record: 0, path, type, where, text }],
    );
    const { bytes, stale, stamp } = result as {
      bytes: Uint8Array;
      stale: boolean;
      stamp: FieldStamp;
    };
    return { value: bytesToValue(bytes, type, where), stale, stamp };
  }

  async currentWriter(
    resource: string,
    path: string,
  ): Promise<Pick<FieldStamp, "provider" | "keyId">> {
    const { route } = this.#field(resource, path);
    if (route === "engine") return this.#needEngine().transformerFor(resource).currentWriter();
    return { provider: FIELD_SERVICE, keyId: await this.#needService().primaryKeyId() };
  }

  async close(): Promise<void> {
    this.#engine?.close();
    this.#fieldService?.close();
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

  /** Listed fields present in each record; null and absent fields are left as they are. */
  #items(resource: string, spec: ResourceFields, records: readonly FieldRecord[]) {
    const items: (FieldItem & { value: FieldPlaintext })[] = [];
    for (const [record, { id, document }] of records.entries())
      for (const [path, type] of spec.fields) {
        const value = getPath(document, path);
        if (value !== undefined && value !== null)
          items.push({ record, path, type, where: `${resource} ${id} ${path}`, value });
      }
    return items;
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
      return Promise.all(
        items.map(async (item) => {
          const id = (records[item.record] as { id: string }).id;
          const stored = await transformer.toStorage(
            item.bytes,
            fieldAuthenticatedData(resource, item.path, id),
          );
          return {
            text: Buffer.from(stored.data).toString("base64"),
            stamp: { path: item.path, route: "engine" as const, ...stored.writer },
          };
        }),
      );
    }
    const answer = await this.#needService().seal(
      resource,
      this.#batch(resource, records, items, (item) => item.bytes),
    );
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
      const engine = this.#needEngine();
      return Promise.all(
        items.map(async (item) => {
          const data = decodeCanonicalBase64(item.text);
          if (data === undefined)
            throw new MalformedCiphertextError(`${item.where} is not standard base64`);
          const id = (records[item.record] as { id: string }).id;
          const read = await engine
            .transformerFor(resource)
            .fromStorage(data, fieldAuthenticatedData(resource, item.path, id));
          return {
            bytes: read.plaintext,
            stale: read.stale,
            stamp: { path: item.path, route: "engine" as const, ...read.writer },
          };
        }),
      );
    }
    const service = this.#needService();
    const keyIds = items.map((item) => parseFieldValue(item.text).keyId);
    const answer = await service.open(
      resource,
      this.#batch(resource, records, items, (item) => item.text),
    );
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
  #batch<Item extends FieldItem, Value>(
    resource: string,
    records: readonly { id: string; workspace?: string }[],
    items: readonly Item[],
    pick: (item: Item) => Value,
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
      (batch[item.record] as { fields: Record<string, Value> }).fields[item.path] = pick(item);
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
