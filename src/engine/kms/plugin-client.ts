import * as grpc from "@grpc/grpc-js";
import { callUnary } from "../../wire/call-unary.js";
import { type ErrorCode, KmsEnvelopeError } from "../../errors.js";
import { services } from "../../wire/protos.js";
import { grpcAddress } from "../../wire/socket-address.js";

/** Told the method, gRPC status code name and duration of every call (for metrics). */
export type CallObserver = (method: string, code: string, seconds: number) => void;

/**
 * A gRPC client for one KMS plugin socket with the configured per-call timeout. Failures
 * become KMS_PLUGIN_FAILED naming the provider, the method and the plugin's status, never the
 * data sent.
 */
export class PluginConnection {
  readonly #client: grpc.Client;
  readonly #label: string;
  readonly #timeoutMs: number;
  readonly #refusals: Partial<Record<grpc.status, ErrorCode>>;
  readonly #observe: CallObserver | undefined;
  #closed = false;

  /**
   * `refusals` names statuses that mean "this input is bad" rather than "the peer is down",
   * for a peer whose contract says so (our daemon: INVALID_ARGUMENT, NOT_FOUND), so callers
   * can set one record aside instead of stopping.
   */
  constructor(
    service: grpc.ServiceClientConstructor,
    options: {
      socketPath: string;
      label: string;
      timeoutMs: number;
      refusals?: Partial<Record<grpc.status, ErrorCode>>;
      observe?: CallObserver;
    },
  ) {
    // A restarted plugin is usually back within a second; grpc-js's default backoff grows to
    // two minutes, which would outlast kube-apiserver's 10 s unhealthy re-poll many times.
    this.#client = new service(grpcAddress(options.socketPath), grpc.credentials.createInsecure(), {
      "grpc.initial_reconnect_backoff_ms": 100,
      "grpc.max_reconnect_backoff_ms": 2_000,
    });
    this.#label = options.label;
    this.#timeoutMs = options.timeoutMs;
    this.#refusals = options.refusals ?? {};
    this.#observe = options.observe;
  }

  async call<Response>(method: string, request: object): Promise<Response> {
    if (this.#closed)
      throw new KmsEnvelopeError("KMS_PLUGIN_FAILED", `${this.#label}: the engine is closed`);
    const started = performance.now();
    try {
      const answer = await callUnary<Response>(this.#client, method, request, {
        deadline: Date.now() + this.#timeoutMs,
      });
      this.#observe?.(method, "OK", (performance.now() - started) / 1000);
      return answer;
    } catch (error) {
      const failure = error as Partial<grpc.ServiceError>;
      const code = failure.code === undefined ? "UNKNOWN" : grpc.status[failure.code];
      this.#observe?.(method, code, (performance.now() - started) / 1000);
      throw new KmsEnvelopeError(
        (failure.code === undefined ? undefined : this.#refusals[failure.code]) ??
          "KMS_PLUGIN_FAILED",
        `${this.#label}: ${method} failed with ${code}: ${failure.details ?? failure.message ?? "no detail"}; check that the plugin is running and healthy`,
        { cause: error },
      );
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#client.close();
  }
}

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
  readonly #connection: PluginConnection;

  constructor(options: PluginOptions) {
    this.#connection = new PluginConnection(services.kmsV2, {
      socketPath: options.socketPath,
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
  readonly #connection: PluginConnection;

  constructor(options: PluginOptions) {
    this.#connection = new PluginConnection(services.kmsV1, {
      socketPath: options.socketPath,
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
