import * as grpc from "@grpc/grpc-js";
import { type ErrorCode, KmsEnvelopeError } from "../errors.js";
import { callUnary } from "./call-unary.js";

const STATUS_NAMES = Object.fromEntries(
  Object.entries(grpc.status).map(([name, value]) => [value, name]),
) as Record<number, string>;

/** The name of a gRPC status code (`NOT_FOUND`), for metrics, logs and evidence. */
export function statusName(code: number): string {
  return STATUS_NAMES[code] ?? String(code);
}

/** Told the method, gRPC status code name and duration of every call (for metrics). */
export type CallObserver = (method: string, code: string, seconds: number) => void;

/** How one call ended: the answer, or the gRPC status; with its latency either way. */
export type CallResult<T> =
  | { ok: true; value: T; ms: number }
  | { ok: false; code: grpc.status; codeName: string; details: string; ms: number };

/** Options of a connection to one service on one socket. */
interface UnaryConnectionOptions {
  /** A grpc-js target (`unix:/path`, `unix-abstract:name`), see wire/socket-address.ts. */
  readonly address: string;
  /** Deadline of every call. */
  readonly timeoutMs: number;
  /** Names the peer in errors ("kms v2 provider \"p\""). */
  readonly label: string;
  /**
   * Statuses that mean "this input is bad" rather than "the peer is down", for a peer whose
   * contract says so (our daemon: INVALID_ARGUMENT, NOT_FOUND), so callers can set one record
   * aside instead of stopping.
   */
  readonly refusals?: Partial<Record<grpc.status, ErrorCode>>;
  /**
   * The code of every other failure, and what to do when the peer itself is in question
   * (default `KMS_PLUGIN_FAILED`, "check that the plugin is running and healthy").
   */
  readonly failure?: { readonly code: ErrorCode; readonly remedy: string };
  readonly observe?: CallObserver;
  readonly channelOptions?: grpc.ChannelOptions;
}

/**
 * Failures that put the peer itself in question (not running, stuck, crashing), for which the
 * connection's remedy is the advice. Any other status is the peer's answer about the call (a
 * value that does not decrypt, a refused argument), whose own words say what is wrong; "check
 * that it is running" would send the operator after a healthy peer.
 */
const PEER_FAILURES: ReadonlySet<grpc.status> = new Set([
  grpc.status.UNAVAILABLE,
  grpc.status.DEADLINE_EXCEEDED,
  grpc.status.UNKNOWN,
  grpc.status.INTERNAL,
]);

/**
 * What a failed call's details tell an operator. grpc-js words its own failures for its
 * maintainers: a refused connection is "No connection established. Last error: Error: connect
 * ENOENT /p.sock. Resolution note: " and a deadline carries its timing breakdown. Only the
 * system error, or the time waited, is kept; a peer's own details pass unchanged (one line).
 */
function detailsOf(failure: Partial<grpc.ServiceError>): string {
  const text = failure.details || failure.message || "no detail";
  const connect =
    /^No connection established\. Last error: (?:\w*Error: )?(.*?)\.? Resolution note:/s.exec(text);
  if (connect !== null)
    return connect[1] === "" || connect[1] === "null"
      ? "cannot connect"
      : `cannot connect (${connect[1]})`;
  const deadline = /^Deadline exceeded after [^,]+/.exec(text);
  if (deadline !== null) return deadline[0];
  return (text.split("\n")[0] as string).slice(0, 300);
}

const PLUGIN_FAILURE = {
  code: "KMS_PLUGIN_FAILED",
  remedy: "check that the plugin is running and healthy",
} as const;

/**
 * The one gRPC client connection of the code base: a service on one socket, every call with a
 * deadline. `attempt` reports how a call ended (the conformance rules want the status and the
 * latency); `call` answers or throws a KmsEnvelopeError naming the peer, the method and its
 * status, never the data sent.
 */
export class UnaryConnection {
  readonly #client: grpc.Client;
  readonly #options: UnaryConnectionOptions;
  #closed = false;

  constructor(
    service: new (...args: ConstructorParameters<typeof grpc.Client>) => grpc.Client,
    options: UnaryConnectionOptions,
  ) {
    this.#client = new service(options.address, grpc.credentials.createInsecure(), {
      // A restarted peer is usually back within a second; grpc-js's default backoff grows to
      // two minutes, which would outlast kube-apiserver's 10 s unhealthy re-poll many times.
      "grpc.initial_reconnect_backoff_ms": 100,
      "grpc.max_reconnect_backoff_ms": 2_000,
      ...options.channelOptions,
    });
    this.#options = options;
  }

  /** Calls a method of the service; never rejects. */
  attempt<T>(method: string, request: object): Promise<CallResult<T>> {
    return this.#timed<T>(method, () =>
      callUnary<T>(this.#client, method, request, this.#callOptions()),
    );
  }

  /** Sends `body` as the raw request message of `path` (not protobuf-encoded by us). */
  attemptRaw(path: string, body: Buffer): Promise<CallResult<Buffer>> {
    const identity = (bytes: Buffer) => bytes;
    return this.#timed<Buffer>(
      path,
      () =>
        new Promise((resolve, reject) =>
          this.#client.makeUnaryRequest(
            path,
            identity,
            identity,
            body,
            this.#callOptions(),
            (error, value) => (error ? reject(error) : resolve(value as Buffer)),
          ),
        ),
    );
  }

  /**
   * Calls a method and answers, or throws the connection's failure code (or the mapped refusal). `refusals`
   * replaces the connection's for a method whose refusals mean something else.
   */
  async call<T>(
    method: string,
    request: object,
    refusals: UnaryConnectionOptions["refusals"] = this.#options.refusals,
  ): Promise<T> {
    const { label, failure = PLUGIN_FAILURE } = this.#options;
    if (this.#closed) throw new KmsEnvelopeError(failure.code, `${label}: the client is closed`);
    const result = await this.attempt<T>(method, request);
    if (result.ok) return result.value;
    const refusal = refusals?.[result.code];
    // A refusal is about the input, so the peer's own words say what is wrong with it.
    if (refusal !== undefined)
      throw new KmsEnvelopeError(refusal, `${label}: ${method} refused: ${result.details}`);
    const remedy = PEER_FAILURES.has(result.code) ? `; ${failure.remedy}` : "";
    throw new KmsEnvelopeError(
      failure.code,
      `${label}: ${method} failed with ${result.codeName}: ${result.details}${remedy}`,
    );
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#client.close();
  }

  #callOptions(): grpc.CallOptions {
    return { deadline: Date.now() + this.#options.timeoutMs };
  }

  async #timed<T>(method: string, start: () => Promise<T>): Promise<CallResult<T>> {
    const started = performance.now();
    const elapsed = () => Math.round((performance.now() - started) * 100) / 100;
    try {
      const value = await start();
      this.#options.observe?.(method, "OK", elapsed() / 1000);
      return { ok: true, value, ms: elapsed() };
    } catch (error) {
      const failure = error as Partial<grpc.ServiceError>;
      const code = failure.code ?? grpc.status.UNKNOWN;
      const codeName = failure.code === undefined ? "UNKNOWN" : statusName(code);
      this.#options.observe?.(method, codeName, elapsed() / 1000);
      return {
        ok: false,
        code,
        codeName,
        details: detailsOf(failure),
        ms: elapsed(),
      };
    }
  }
}
