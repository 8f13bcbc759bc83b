/**
 * The contract between the field layer (which encrypts the sensitive fields a field map names)
 * and whatever stores records (src/store/). A store never sees keys: it hands documents to a
 * FieldCodec and keeps the stamps, so "what needs rewrapping" is a query over stamps.
 */

/** Any JSON value, as `JSON.parse` returns it. */
export type JsonValue =
  | null
  | boolean
  | number
  | string
  | JsonValue[]
  | { [key: string]: JsonValue };
/** A JSON document as applications store it: plain fields stay as they are. */
export type JsonObject = { [key: string]: JsonValue };

/**
 * How a field is protected; both store text. `engine`: the in-process engine and the
 * EncryptionConfiguration rule for the resource (standard base64 of Kubernetes' bytes);
 * `field-service`: the kms-envelope daemon's workspace keys (`kmse:v1:<key id>:<base64>`).
 */
export type FieldRoute = "engine" | "field-service";

/** Who wrote one encrypted field, known without decrypting it. */
export interface FieldStamp {
  /** Field path as the field map names it (dot-separated for nested fields). */
  readonly path: string;
  /** The route the field map gave the resource when the value was written. */
  readonly route: FieldRoute;
  /**
   * Engine: the provider that wrote the value, e.g. `kms:v2:<name>`, `secretbox`, `aesgcm`;
   * field service: `field-service`.
   */
  readonly provider: string;
  /**
   * Engine: the key name (aesgcm, aescbc, secretbox) or the plugin's key id (kms v2, `""` for
   * kms v1); field service: the kms-envelope key id inside the `kmse:v1:` value. Public.
   */
  readonly keyId: string;
}

/** One record to seal or open; `workspace` is required for field-service resources. */
export interface FieldRecord {
  /**
   * The record's id. Sealed values are bound to it (and to the resource and field path), so a
   * value copied to another record does not open.
   */
  readonly id: string;
  /** The document: plaintext fields to seal, or stored text to open. Never modified. */
  readonly document: JsonObject;
  /**
   * Whose workspace key seals field-service fields; the same workspace must be given to open
   * them. Not used by engine fields.
   */
  readonly workspace?: string;
}

/**
 * The lookup token (SPEC.md §2.1) of one field of a sealed record, under the primary master-key
 * version: what a store indexes so the record can be found by the field's value.
 */
export interface LookupToken {
  /** The field path, as the field map names it. */
  readonly path: string;
  /** `kmsl:v1:<key id>:<tag>`; reveals equality of values of this field, nothing else. */
  readonly token: string;
}

/** One record as {@link FieldCodec.seal} returns it, in input order. */
export interface SealedRecord {
  /** The input record's id. */
  readonly id: string;
  /** The document with every listed, present field replaced by its stored text. */
  readonly document: JsonObject;
  /** One stamp per field sealed, for the store to keep beside the document. */
  readonly stamps: readonly FieldStamp[];
  /**
   * One token per present field the field map declares a lookup for, for the store to index in
   * the same transaction as the document; absent or empty when there is none.
   */
  readonly tokens?: readonly LookupToken[];
}

/** One record as {@link FieldCodec.open} returns it, in input order. */
export interface OpenedRecord {
  /** The input record's id. */
  readonly id: string;
  /** The document with every listed field restored to its original JSON value and type. */
  readonly document: JsonObject;
  /** True when some field was not written by the current primary provider/key (rewrap it). */
  readonly stale: boolean;
  /** Stamps of the stored values that were opened (who wrote them). */
  readonly stamps: readonly FieldStamp[];
}

/**
 * Seals and opens the sensitive fields of records, as a field map lists them; what the store
 * is given. {@link openFieldLayer} returns the implementation.
 *
 * @remarks
 * seal and open refuse (`UNMAPPED_RESOURCE`) a resource the codec has no entry for, unless it
 * was built to let such resources through: a mistyped resource name must not store plaintext.
 * Calls may run concurrently. Errors never carry field values or keys.
 */
export interface FieldCodec {
  /**
   * Encrypts the listed fields of each record of one resource; all or nothing (the result, or
   * one rejection).
   *
   * @param resource - The resource as the field map names it.
   * @param records - Records to seal; their documents are not modified.
   * @returns One sealed record per input record, in order.
   * @throws `UNMAPPED_RESOURCE` for a resource the map does not list; `INVALID_REQUEST` for a
   * value of the wrong type or a field-service record without a workspace; `INVALID_CONFIG`
   * when the encryption the map asks for is not available; `KMS_PLUGIN_FAILED` when a plugin or
   * the daemon fails.
   */
  seal(resource: string, records: readonly FieldRecord[]): Promise<SealedRecord[]>;
  /**
   * Decrypts the listed fields of each record of one resource; all or nothing (the result, or
   * one rejection).
   *
   * @param resource - The resource as the field map names it.
   * @param records - Records as stored; their documents are not modified.
   * @returns One opened record per input record, in order.
   * @throws `UNMAPPED_RESOURCE`; `MALFORMED_CIPHERTEXT` for a listed field that is not stored
   * ciphertext text; `DECRYPTION_FAILED` when a value does not authenticate (tampered, or copied
   * from another record, field or workspace); `UNKNOWN_KEY_ID` when it names a master-key
   * version not loaded or retired; `INVALID_REQUEST` when a decrypted value is not of the
   * field's type or a field-service record has no workspace; `KMS_PLUGIN_FAILED` when a plugin
   * or the daemon fails.
   */
  open(resource: string, records: readonly FieldRecord[]): Promise<OpenedRecord[]>;
  /**
   * The check seal and open make, for callers that touch a resource without them (a read of a
   * missing record, a delete) or that must fail before other work.
   *
   * @throws `UNMAPPED_RESOURCE` when seal and open would refuse the resource.
   */
  checkResource(resource: string): void;
  /**
   * The (provider, keyId) a field of this resource would be written with now; what rewrap
   * compares stamps with.
   *
   * @param resource - The resource as the field map names it.
   * @param path - One of its encrypted field paths.
   * @throws `UNMAPPED_RESOURCE`; `INVALID_REQUEST` when the map lists no such encrypted field;
   * `KMS_PLUGIN_FAILED` when the writer cannot be known now (a kms v2 plugin not healthy, the
   * daemon unreachable).
   */
  currentWriter(resource: string, path: string): Promise<Pick<FieldStamp, "provider" | "keyId">>;
  /**
   * The tokens a search for `value` in a lookup field matches: its token under every master-key
   * version the daemon holds, the primary's first, so records indexed before a rotation are
   * found until rewrap moves them.
   *
   * @param resource - The resource as the field map names it.
   * @param path - A field the map declares a lookup for.
   * @param workspace - The workspace whose records are searched; tokens of another never match.
   * @param value - The value searched for, before normalizing (the field's normalizers apply).
   * @throws `UNMAPPED_RESOURCE`; `INVALID_REQUEST` when the field has no lookup or the workspace
   * is empty; `DAEMON_UNREACHABLE` when the daemon does not answer.
   */
  tokensFor(resource: string, path: string, workspace: string, value: string): Promise<string[]>;
  /** The encrypted field paths the field map lists for a resource (`[]` if none; never throws). */
  encryptedPaths(resource: string): readonly string[];
  /**
   * The fields the field map declares a lookup for on a resource (`[]` if none; never throws):
   * where rewrap expects a token under the primary master-key version beside every present value.
   */
  lookupPaths(resource: string): readonly string[];
  /** Releases connections to plugins and the daemon; idempotent. */
  close(): Promise<void>;
}
