/**
 * Credentials kept the way the seed platform keeps them: the whole secret map of a credential
 * is one encrypted value (the `secrets` field of the `credentials` resource, a `json` field in
 * the field map), beside its plain name and context. One value per credential means one seal,
 * one stamp and one rewrap per credential, and no key of the map ever lands in the clear.
 */

import { ConfigError, KmsEnvelopeError } from "../errors.js";
import type { FieldCodec, JsonObject } from "../fields/field-codec.js";
import type { EncryptedStore } from "./encrypted-store.js";

/** The resource credentials are stored as; the field map must list it. */
export const CREDENTIALS_RESOURCE = "credentials";
/**
 * The field of {@link CREDENTIALS_RESOURCE} holding the secret map; the field map must encrypt
 * it (type json).
 */
export const SECRETS_FIELD = "secrets";

/** One credential as applications see it. */
export interface Credential {
  /** The credential's name (plain); with `context`, identifies it. Not empty. */
  readonly name: string;
  /** Which tool or server the credential is for (plain, for listing). Not empty. */
  readonly context: string;
  /** The secret values by key; stored as one encrypted json value. */
  readonly secrets: Readonly<Record<string, string>>;
  /** The record's version, for the next `put` with `expectedVersion`. */
  readonly version: number;
}

/**
 * Stores credentials through an EncryptedStore whose codec encrypts `credentials.secrets`. A
 * credential is the record `<context>/<name>` (each percent-encoded) of the `credentials`
 * resource. Errors are the store's (see {@link EncryptedStore}).
 */
export class CredentialStore {
  readonly #store: EncryptedStore;

  /**
   * Refuses (`INVALID_CONFIG`) a codec whose field map would leave the secret map in the clear.
   *
   * @param store - Where credentials are kept.
   * @param codec - The codec `store` was built with; checked here, not used otherwise.
   */
  constructor(store: EncryptedStore, codec: FieldCodec) {
    if (!codec.encryptedPaths(CREDENTIALS_RESOURCE).includes(SECRETS_FIELD)) {
      throw new ConfigError(
        `field map ${CREDENTIALS_RESOURCE}.${SECRETS_FIELD}`,
        "is not encrypted",
        "add it to the field map, with type json, before storing credentials",
      );
    }
    this.#store = store;
  }

  /**
   * Creates a credential, or with `expectedVersion` replaces an existing one.
   *
   * @param credential - Name, context and the whole secret map (copied).
   * @param options - `subjectId` and `workspace` apply when creating (an update keeps the stored
   * ones); `expectedVersion`: replace the credential at that version instead of creating it.
   * @returns The stored credential with its new version.
   * @throws `INVALID_REQUEST` for an empty name or context; `STORE_CONFLICT` when creating one
   * that exists, or replacing one that changed or does not exist.
   */
  async put(
    credential: Omit<Credential, "version">,
    options: { subjectId?: string; workspace?: string; expectedVersion?: number } = {},
  ): Promise<Credential> {
    const document: JsonObject = {
      name: credential.name,
      context: credential.context,
      [SECRETS_FIELD]: { ...credential.secrets },
    };
    const record =
      options.expectedVersion === undefined
        ? await this.#store.create(CREDENTIALS_RESOURCE, {
            id: credentialId(credential.name, credential.context),
            subjectId: options.subjectId ?? null,
            workspace: options.workspace ?? null,
            document,
          })
        : await this.#store.update(
            CREDENTIALS_RESOURCE,
            credentialId(credential.name, credential.context),
            options.expectedVersion,
            document,
          );
    return { ...credential, secrets: { ...credential.secrets }, version: record.version };
  }

  /**
   * Reads a credential with its secrets decrypted; undefined when there is none.
   *
   * @throws `INVALID_REQUEST` for an empty name or context.
   */
  async get(name: string, context: string): Promise<Credential | undefined> {
    const record = await this.#store.read(CREDENTIALS_RESOURCE, credentialId(name, context));
    if (record === undefined) return undefined;
    return {
      name,
      context,
      secrets: record.document[SECRETS_FIELD] as Record<string, string>,
      version: record.version,
    };
  }

  /**
   * Deletes a credential, whatever its version; false when there was none.
   *
   * @throws `INVALID_REQUEST` for an empty name or context (synchronously, not as a rejection).
   */
  delete(name: string, context: string): Promise<boolean> {
    return this.#store.delete(CREDENTIALS_RESOURCE, credentialId(name, context));
  }
}

/**
 * A credential's record id: context and name, each percent-encoded, joined by "/", so two
 * different pairs never share an id (and so never share authenticated data).
 */
export function credentialId(name: string, context: string): string {
  if (name === "" || context === "") {
    throw new KmsEnvelopeError(
      "INVALID_REQUEST",
      "a credential needs a non-empty name and context",
    );
  }
  return `${encodeURIComponent(context)}/${encodeURIComponent(name)}`;
}
