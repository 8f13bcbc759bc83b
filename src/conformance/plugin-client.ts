import { services } from "../wire/protos.js";
import { type CallResult, UnaryConnection } from "../wire/unary-connection.js";

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
  readonly #v2: UnaryConnection;
  readonly #v1: UnaryConnection;

  constructor(address: string, timeoutMs: number) {
    const options = { address, timeoutMs, label: "plugin", channelOptions: CHANNEL_OPTIONS };
    this.#v2 = new UnaryConnection(services.kmsV2, options);
    this.#v1 = new UnaryConnection(services.kmsV1, options);
  }

  /** Calls a v2 (`v2.KeyManagementService`) or v1beta1 method with the per-call deadline. */
  call<T>(api: "v2" | "v1", method: string, request: object): Promise<CallResult<T>> {
    return (api === "v2" ? this.#v2 : this.#v1).attempt<T>(method, request);
  }

  /** Sends `body` as the raw request message of a v2 method (not protobuf-encoded by us). */
  callRaw(method: string, body: Buffer): Promise<CallResult<Buffer>> {
    return this.#v2.attemptRaw(`/v2.KeyManagementService/${method}`, body);
  }

  close(): void {
    this.#v2.close();
    this.#v1.close();
  }
}

/** A failed call in one line of evidence. */
export function failureText(result: { codeName: string; details: string; ms: number }): string {
  return `${result.codeName} "${result.details}" after ${result.ms} ms`;
}
