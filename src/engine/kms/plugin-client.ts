import { services } from "../../wire/protos.js";
import { grpcAddress } from "../../wire/socket-address.js";
import { type CallObserver, UnaryConnection } from "../../wire/unary-connection.js";

export interface PluginOptions {
  readonly socketPath: string;
  readonly name: string;
  readonly timeoutMs: number;
  readonly observe?: CallObserver;
}

export interface KmsV2StatusAnswer {
  readonly version: string;
  readonly healthz: string;
  readonly keyId: string;
}

export interface KmsV2EncryptAnswer {
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
    const answer = await this.#connection.call<{
      version: string;
      healthz: string;
      key_id: string;
    }>("Status", {});
    return { version: answer.version, healthz: answer.healthz, keyId: answer.key_id };
  }

  async encrypt(uid: string, plaintext: Uint8Array): Promise<KmsV2EncryptAnswer> {
    const answer = await this.#connection.call<{
      ciphertext: Buffer;
      key_id: string;
      annotations: Record<string, Buffer>;
    }>("Encrypt", { uid, plaintext });
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
    const answer = await this.#connection.call<{ plaintext: Buffer }>("Decrypt", {
      uid,
      ciphertext: request.ciphertext,
      key_id: request.keyId,
      annotations: Object.fromEntries(request.annotations),
    });
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
    const answer = await this.#connection.call<{ version: string }>("Version", {
      version: KmsV1Plugin.API_VERSION,
    });
    return answer.version;
  }

  async encrypt(plain: Uint8Array): Promise<Uint8Array> {
    const answer = await this.#connection.call<{ cipher: Buffer }>("Encrypt", {
      version: KmsV1Plugin.API_VERSION,
      plain,
    });
    return answer.cipher;
  }

  async decrypt(cipher: Uint8Array): Promise<Uint8Array> {
    const answer = await this.#connection.call<{ plain: Buffer }>("Decrypt", {
      version: KmsV1Plugin.API_VERSION,
      cipher,
    });
    return answer.plain;
  }

  close(): void {
    this.#connection.close();
  }
}
