import * as grpc from "@grpc/grpc-js";
import { services } from "../wire/protos.js";

/** How one RPC ended: the answer, or the gRPC status; with its latency either way. */
export type CallResult<T> =
  | { ok: true; value: T; ms: number }
  | { ok: false; code: grpc.status; codeName: string; details: string; ms: number };

/** KMS v2 Status answer (proto field names). */
export interface StatusAnswer {
  version: string;
  healthz: string;
  key_id: string;
}

/** KMS v2 Encrypt answer. */
export interface EncryptAnswer {
  ciphertext: Buffer;
  key_id: string;
  annotations: Record<string, Buffer>;
}

const CODE_NAMES = Object.fromEntries(
  Object.entries(grpc.status).map(([name, value]) => [value, name]),
) as Record<number, string>;

// One channel per API, as kube-apiserver opens one per provider. It sets :authority to
// localhost (KMS-CONTRACT.md §1.3); some plugins check it. Large limits let the size rules
// send 1 MiB payloads; the apiserver itself only sends 32 bytes.
const CHANNEL_OPTIONS = {
  "grpc.default_authority": "localhost",
  "grpc.max_receive_message_length": 16 * 1024 * 1024,
  "grpc.max_send_message_length": 16 * 1024 * 1024,
};

/** A client of one plugin socket for the conformance rules: every call bounded and timed. */
export class PluginClient {
  readonly #v2: grpc.Client;
  readonly #v1: grpc.Client;
  readonly #timeoutMs: number;

  constructor(address: string, timeoutMs: number) {
    const credentials = grpc.credentials.createInsecure();
    this.#v2 = new services.kmsV2(address, credentials, CHANNEL_OPTIONS);
    this.#v1 = new services.kmsV1(address, credentials, CHANNEL_OPTIONS);
    this.#timeoutMs = timeoutMs;
  }

  /** Calls a v2 (`v2.KeyManagementService`) or v1beta1 method with the per-call deadline. */
  call<T>(api: "v2" | "v1", method: string, request: object): Promise<CallResult<T>> {
    const client = api === "v2" ? this.#v2 : this.#v1;
    const invoke = (client as unknown as Record<string, UnaryMethod>)[method];
    if (invoke === undefined) throw new TypeError(`no ${api} method ${method}`);
    return this.#timed<T>((done) => invoke.call(client, request, this.#options(), done));
  }

  /** Sends `body` as the raw request message of a v2 method (not protobuf-encoded by us). */
  callRaw(method: string, body: Buffer): Promise<CallResult<Buffer>> {
    const path = `/v2.KeyManagementService/${method}`;
    const identity = (bytes: Buffer) => bytes;
    return this.#timed<Buffer>((done) =>
      this.#v2.makeUnaryRequest(path, identity, identity, body, this.#options(), done),
    );
  }

  close(): void {
    this.#v2.close();
    this.#v1.close();
  }

  #options(): grpc.CallOptions {
    return { deadline: Date.now() + this.#timeoutMs };
  }

  #timed<T>(
    start: (done: (error: grpc.ServiceError | null, value?: unknown) => void) => void,
  ): Promise<CallResult<T>> {
    const started = performance.now();
    const elapsed = () => Math.round((performance.now() - started) * 100) / 100;
    return new Promise((resolve) => {
      start((error, value) => {
        if (error) {
          resolve({
            ok: false,
            code: error.code,
            codeName: CODE_NAMES[error.code] ?? String(error.code),
            details: (error.details || error.message).slice(0, 300),
            ms: elapsed(),
          });
        } else resolve({ ok: true, value: value as T, ms: elapsed() });
      });
    });
  }
}

type UnaryMethod = (
  request: object,
  options: grpc.CallOptions,
  callback: (error: grpc.ServiceError | null, value?: unknown) => void,
) => void;

/** A failed call in one line of evidence. */
export function failureText(result: { codeName: string; details: string; ms: number }): string {
  return `${result.codeName} "${result.details}" after ${result.ms} ms`;
}
