import type { DecryptResponse__Output as V1DecryptResponse } from "../../wire/generated/v1beta1/DecryptResponse.js";
import type { EncryptResponse__Output as V1EncryptResponse } from "../../wire/generated/v1beta1/EncryptResponse.js";
import type { VersionResponse__Output } from "../../wire/generated/v1beta1/VersionResponse.js";
import type { DecryptRequest } from "../../wire/generated/v2/DecryptRequest.js";
import type { DecryptResponse__Output } from "../../wire/generated/v2/DecryptResponse.js";
import type { EncryptRequest } from "../../wire/generated/v2/EncryptRequest.js";
import type { EncryptResponse__Output } from "../../wire/generated/v2/EncryptResponse.js";
import type { StatusResponse__Output } from "../../wire/generated/v2/StatusResponse.js";
import { services } from "../../wire/protos.js";
import { grpcAddress } from "../../wire/socket-address.js";
import { type CallObserver, UnaryConnection } from "../../wire/unary-connection.js";

interface PluginOptions {
  readonly socketPath: string;
  readonly name: string;
  readonly timeoutMs: number;
  readonly observe?: CallObserver;
}

interface KmsV2StatusAnswer {
  readonly version: string;
  readonly healthz: string;
  readonly keyId: string;
}

interface KmsV2EncryptAnswer {
  readonly ciphertext: Uint8Array;
  readonly keyId: string;
  readonly annotations: ReadonlyMap<string, Uint8Array>;
}

/** The three KMS v2 calls kube-apiserver makes, in the engine's vocabulary. */
export class KmsV2Plugin {
  readonly #connection: UnaryConnection;

  constructor(options: PluginOptions) {
    this.#connection = new UnaryConnection(services.kmsV2, {
      address: grpcAddress(options.socketPath),
      label: `kms v2 provider ${JSON.stringify(options.name)}`,
      timeoutMs: options.timeoutMs,
      observe: options.observe,
    });
  }

  async status(): Promise<KmsV2StatusAnswer> {
    const answer = await this.#connection.call<StatusResponse__Output>("Status", {});
    return { version: answer.version, healthz: answer.healthz, keyId: answer.key_id };
  }

  async encrypt(uid: string, plaintext: Uint8Array): Promise<KmsV2EncryptAnswer> {
    const request: EncryptRequest = { uid, plaintext };
    const answer = await this.#connection.call<EncryptResponse__Output>("Encrypt", request);
    return {
      ciphertext: answer.ciphertext,
      keyId: answer.key_id,
      annotations: new Map(Object.entries(answer.annotations ?? {})),
    };
  }

  async decrypt(
    uid: string,
    request: {
      ciphertext: Uint8Array;
      keyId: string;
      annotations: ReadonlyMap<string, Uint8Array>;
    },
  ): Promise<Uint8Array> {
    const message: DecryptRequest = {
      uid,
      ciphertext: request.ciphertext,
      key_id: request.keyId,
      annotations: Object.fromEntries(request.annotations),
    };
    const answer = await this.#connection.call<DecryptResponse__Output>("Decrypt", message);
    return answer.plaintext;
  }

  close(): void {
    this.#connection.close();
  }
}

/** The deprecated v1beta1 calls; every request carries the API version string. */
export class KmsV1Plugin {
  static readonly API_VERSION = "v1beta1";
  readonly #connection: UnaryConnection;

  constructor(options: PluginOptions) {
    this.#connection = new UnaryConnection(services.kmsV1, {
      address: grpcAddress(options.socketPath),
      label: `kms v1 provider ${JSON.stringify(options.name)}`,
      timeoutMs: options.timeoutMs,
      observe: options.observe,
    });
  }

  async version(): Promise<string> {
    const answer = await this.#connection.call<VersionResponse__Output>("Version", {
      version: KmsV1Plugin.API_VERSION,
    });
    return answer.version;
  }

  async encrypt(plain: Uint8Array): Promise<Uint8Array> {
    const answer = await this.#connection.call<V1EncryptResponse>("Encrypt", {
      version: KmsV1Plugin.API_VERSION,
      plain,
    });
    return answer.cipher;
  }

  async decrypt(cipher: Uint8Array): Promise<Uint8Array> {
    const answer = await this.#connection.call<V1DecryptResponse>("Decrypt", {
      version: KmsV1Plugin.API_VERSION,
      cipher,
    });
    return answer.plain;
  }

  close(): void {
    this.#connection.close();
  }
}
