/**
 * The contract between the field layer (which encrypts the sensitive fields a field map names)
 * and whatever stores records (src/store/). A store never sees keys: it hands documents to a
 * FieldCodec and keeps the stamps, so "what needs rewrapping" is a query over stamps.
 */

/** A JSON document as applications store it: plain fields stay as they are. */
export type JsonValue =
  | null
  | boolean
  | number
  | string
  | JsonValue[]
  | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

/** How a field is protected; both store text. */
export type FieldRoute = "engine" | "field-service";

/** Who wrote one encrypted field, known without decrypting it. */
export interface FieldStamp {
  /** Field path as the field map names it (dot-separated for nested fields). */
  readonly path: string;
  readonly route: FieldRoute;
  /**
   * Engine: the provider that wrote the value, e.g. "kms:v2:<name>", "secretbox", "aesgcm";
   * field service: "field-service".
   */
  readonly provider: string;
  /**
   * Engine: the key name (aesgcm/aescbc/secretbox) or the plugin's key id (kms v2, "" for kms
   * v1); field service: the kms-envelope key id inside the `kmse:v1:` value.
   */
  readonly keyId: string;
}

/** One record to seal or open; `workspace` is required for field-service resources. */
export interface FieldRecord {
  readonly id: string;
  readonly document: JsonObject;
  readonly workspace?: string;
}

export interface SealedRecord {
  readonly id: string;
  /** The document with every listed, present field replaced by its stored text. */
  readonly document: JsonObject;
  readonly stamps: readonly FieldStamp[];
}

export interface OpenedRecord {
  readonly id: string;
  /** The document with every listed field restored to its original JSON value and type. */
  readonly document: JsonObject;
  /** True when some field was not written by the current primary provider/key (rewrap it). */
  readonly stale: boolean;
  /** Stamps of the stored values that were opened (who wrote them). */
  readonly stamps: readonly FieldStamp[];
}

/**
 * seal and open refuse (UNMAPPED_RESOURCE) a resource the codec has no entry for, unless it was
 * built to let such resources through: a mistyped resource name must not store plaintext.
 */
export interface FieldCodec {
  /** Encrypts the listed fields of each record of one resource; all or nothing. */
  seal(resource: string, records: readonly FieldRecord[]): Promise<SealedRecord[]>;
  /** Decrypts the listed fields of each record of one resource; all or nothing. */
  open(resource: string, records: readonly FieldRecord[]): Promise<OpenedRecord[]>;
  /**
   * The check seal and open make, for callers that touch a resource without them (a read of a
   * missing record, a delete) or that must fail before other work.
   */
  checkResource(resource: string): void;
  /** The (provider, keyId) a field of this resource would be written with now. */
  currentWriter(resource: string, path: string): Promise<Pick<FieldStamp, "provider" | "keyId">>;
  /** The encrypted field paths the field map lists for a resource ([] when none; never refuses). */
  encryptedPaths(resource: string): readonly string[];
  /** Releases connections to plugins and the daemon; idempotent. */
  close(): Promise<void>;
}
