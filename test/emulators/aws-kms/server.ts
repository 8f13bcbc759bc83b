/**
 * # AWS KMS emulator (tests only)
 *
 * A real HTTP server on 127.0.0.1 speaking the AWS KMS JSON 1.1 protocol
 * (CLOUD-PROTOCOLS.md §B.1), so the unmodified `@aws-sdk/client-kms` runs against it:
 * `POST /` with `X-Amz-Target: TrentService.<Operation>`, `application/x-amz-json-1.1`, base64
 * blobs, PascalCase members, errors as `{"__type", "message"}` with the service's HTTP status,
 * and an `x-amzn-RequestId` header on every response.
 *
 * - **Authentication**: every request's SigV4 signature is recomputed from the credentials
 *   the emulator was started with (sigv4.ts); a wrong secret gets 400 InvalidSignatureException,
 *   an unknown access key 400 UnrecognizedClientException, as the real service answers.
 * - **Operations**: Encrypt, Decrypt, DescribeKey, GenerateDataKey; keys addressed by key id,
 *   key ARN, `alias/<name>` or alias ARN. Encryption is real AES-256-GCM under a random
 *   per-key key, with the encryption context as AAD and the key id inside the blob
 *   (key-store.ts); key states and access denial as the service reports them (operations.ts).
 * - **Control API** (TypeScript, not HTTP): keys and aliases, key states, access denial,
 *   scripted faults (throttling, 500/503), response delay, response corruption, and counters of
 *   calls per operation.
 *
 * ```ts
 * const kms = await AwsKmsEmulator.start();
 * const { arn } = kms.createKey();
 * const client = new KMSClient({ region: kms.region, endpoint: kms.endpoint, credentials: kms.credentials });
 * kms.throttleNext(1); // the next call gets ThrottlingException
 * await kms.close();
 * ```
 *
 * Everything is bounded (body size, connections, delay, fault counts) and bound to loopback.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { CredentialIssuer } from "./credentials.js";
import { KmsServiceError } from "./errors.js";
import { type KeyState, KeyStore } from "./key-store.js";
import { OPERATIONS, type Operation, type OperationOutput, runOperation } from "./operations.js";
import { type EmulatorCredentials, verifySignature } from "./sigv4.js";

export type { KeyState } from "./key-store.js";
export type { Operation } from "./operations.js";
export type { EmulatorCredentials } from "./sigv4.js";

/** How the emulator is started; everything has a default. */
export interface AwsKmsEmulatorOptions {
  region?: string;
  accountId?: string;
  /** Credentials requests must be signed with (random by default). */
  credentials?: EmulatorCredentials;
}

/** A scripted fault for one call: throttling, or a server error with that HTTP status. */
export type InjectedFault = "throttle" | 500 | 503;

/** How a corrupted response is damaged: one bit flipped, or the last byte dropped. */
export type CorruptionMode = "flip" | "truncate";

const JSON_CONTENT_TYPE = "application/x-amz-json-1.1";
const TARGET_PREFIX = "TrentService.";
const MAX_BODY_BYTES = 64 * 1024;
const MAX_DELAY_MS = 30_000;
const MAX_SCRIPTED = 10_000;
const THROTTLING_MESSAGE =
  "You have exceeded the rate at which you may call KMS. Reduce the frequency of your calls.";

/** The AWS KMS emulator: start(), drive it through the control API, close(). */
export class AwsKmsEmulator {
  /** Base URL for the SDK's `endpoint` option (`http://127.0.0.1:<port>`). */
  readonly endpoint: string;
  readonly region: string;
  readonly accountId: string;
  readonly credentials: EmulatorCredentials;
  /** Calls per operation that passed authentication (faulted ones included). */
  readonly calls: Record<Operation, number> = emptyCounters();
  /** Requests refused by signature verification. */
  rejectedSignatures = 0;
  /**
   * Short-lived credentials for the SDK's default chain: STS AssumeRoleWithWebIdentity and the
   * container credentials endpoint, served on `endpoint` (AWS_ENDPOINT_URL_STS and
   * AWS_CONTAINER_CREDENTIALS_FULL_URI point here); KMS accepts what it issues until expiry.
   */
  readonly issuer: CredentialIssuer;

  readonly #server: Server;
  readonly #store: KeyStore;
  readonly #faults: InjectedFault[] = [];
  readonly #sleepers = new Set<() => void>();
  // Operations the caller's policies deny; none by default.
  #denied = new Set<Operation>();
  #delayMs = 0;
  #corruptions: CorruptionMode[] = [];
  #closed = false;

  private constructor(server: Server, store: KeyStore, credentials: EmulatorCredentials) {
    this.#server = server;
    this.#store = store;
    this.region = store.region;
    this.accountId = store.accountId;
    this.credentials = credentials;
    this.issuer = new CredentialIssuer(store.accountId);
    const { port } = server.address() as AddressInfo;
    this.endpoint = `http://127.0.0.1:${port}`;
  }

  /** Starts an emulator on an ephemeral loopback port. */
  static async start(options: AwsKmsEmulatorOptions = {}): Promise<AwsKmsEmulator> {
    const store = new KeyStore(options.region ?? "us-east-1", options.accountId ?? "111122223333");
    const credentials = options.credentials ?? {
      accessKeyId: `AKIA${randomBytes(8).toString("hex").toUpperCase()}`,
      secretAccessKey: randomBytes(30).toString("base64"),
    };
    let emulator: AwsKmsEmulator | undefined;
    const server = createServer((request, response) => {
      if (emulator === undefined) request.socket.destroy();
      else void emulator.#handle(request, response);
    });
    server.maxConnections = 64;
    server.requestTimeout = MAX_DELAY_MS * 2;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    emulator = new AwsKmsEmulator(server, store, credentials);
    return emulator;
  }

  /** Creates an enabled symmetric key. */
  createKey(description = ""): { keyId: string; arn: string } {
    const { keyId, arn } = this.#store.createKey(description);
    return { keyId, arn };
  }

  /** Creates (or retargets) `alias/<name>` to a key; returns the alias ARN. */
  createAlias(aliasName: string, keyRef: string): string {
    return this.#store.createAlias(aliasName, keyRef);
  }

  /** The key's current state. */
  keyState(keyRef: string): KeyState {
    return this.#store.resolve(keyRef).state;
  }

  /** Disables a key: crypto calls get DisabledException. */
  disableKey(keyRef: string): void {
    this.#setState(keyRef, "Disabled");
  }

  /** Enables a key (also cancels a scheduled deletion). */
  enableKey(keyRef: string): void {
    this.#setState(keyRef, "Enabled");
  }

  /** Schedules deletion: crypto calls get KMSInvalidStateException. */
  scheduleDeletion(keyRef: string, pendingWindowDays = 7): void {
    const key = this.#store.resolve(keyRef);
    key.state = "PendingDeletion";
    key.deletionDate = new Date(Date.now() + pendingWindowDays * 86_400_000);
  }

  /** Deletes a key for good: it and its aliases answer NotFoundException. */
  deleteKey(keyRef: string): void {
    this.#store.deleteKey(keyRef);
  }

  /** While on, every key-using call fails with AccessDeniedException. */
  denyAccess(deny = true): void {
    this.#denied = new Set(deny ? OPERATIONS : []);
  }

  /**
   * Allows only these operations, as an IAM or key policy granting exactly these `kms:` actions
   * would; the others fail with AccessDeniedException until clearFaults().
   */
  permitOnly(operations: readonly Operation[]): void {
    this.#denied = new Set(OPERATIONS.filter((operation) => !operations.includes(operation)));
  }

  /** The next `count` calls get 400 ThrottlingException. */
  throttleNext(count = 1): void {
    this.#script(count, "throttle");
  }

  /** The next `count` calls get 500 KMSInternalException or 503 DependencyTimeoutException. */
  failNext(count = 1, status: 500 | 503 = 500): void {
    this.#script(count, status);
  }

  /** Delays every response by `milliseconds` (0 turns it off; at most 30 s). */
  delayResponses(milliseconds: number): void {
    if (!Number.isInteger(milliseconds) || milliseconds < 0 || milliseconds > MAX_DELAY_MS) {
      throw new RangeError(`delay must be an integer from 0 to ${MAX_DELAY_MS} ms`);
    }
    this.#delayMs = milliseconds;
  }

  /** Damages the CiphertextBlob (or Plaintext) of the next `count` successful responses. */
  corruptNext(count = 1, mode: CorruptionMode = "flip"): void {
    checkCount(count, this.#corruptions.length);
    this.#corruptions.push(...Array<CorruptionMode>(count).fill(mode));
  }

  /** Drops queued faults and corruptions, the delay and access denials (keys stay). */
  clearFaults(): void {
    this.#faults.length = 0;
    this.#corruptions = [];
    this.#delayMs = 0;
    this.#denied = new Set();
  }

  /** Zeroes the call counters. */
  resetCounters(): void {
    Object.assign(this.calls, emptyCounters());
    this.rejectedSignatures = 0;
  }

  /** Stops listening, drops open connections and pending delays. Safe to call twice. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const wake of this.#sleepers) wake();
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#server.closeAllConnections();
    await closed;
  }

  #setState(keyRef: string, state: KeyState): void {
    const key = this.#store.resolve(keyRef);
    key.state = state;
    delete key.deletionDate;
  }

  #script(count: number, fault: InjectedFault): void {
    checkCount(count, this.#faults.length);
    this.#faults.push(...Array<InjectedFault>(count).fill(fault));
  }

  async #handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const requestId = randomUUID();
    try {
      const body = await readBody(request);
      if (this.issuer.handles(request, body)) {
        this.issuer.answer(request, body, response);
        return;
      }
      try {
        verifySignature(
          { method: request.method ?? "", url: request.url ?? "/", headers: request.headers, body },
          (accessKeyId) =>
            accessKeyId === this.credentials.accessKeyId
              ? this.credentials
              : this.issuer.lookup(accessKeyId),
          this.region,
          "kms",
        );
      } catch (error) {
        this.rejectedSignatures += 1;
        throw error;
      }
      const operation = route(request);
      this.calls[operation] += 1;
      if (this.#delayMs > 0 && !(await this.#sleep(this.#delayMs, response))) return;
      const fault = this.#faults.shift();
      if (fault === "throttle")
        throw new KmsServiceError("ThrottlingException", 400, THROTTLING_MESSAGE);
      if (fault === 500)
        throw new KmsServiceError("KMSInternalException", 500, "KMS internal error (injected).");
      if (fault === 503)
        throw new KmsServiceError(
          "DependencyTimeoutException",
          503,
          "The system timed out while trying to fulfill the request (injected).",
        );
      const output = runOperation(operation, parseInput(body), {
        store: this.#store,
        denied: (operation) => this.#denied.has(operation),
      });
      this.#corrupt(output);
      send(response, 200, requestId, encodeOutput(output));
    } catch (error) {
      const failure =
        error instanceof KmsServiceError
          ? error
          : new KmsServiceError(
              "InternalFailure",
              500,
              "The request processing has failed because of an unknown error.",
            );
      send(response, failure.status, requestId, failure.body());
    }
  }

  #corrupt(output: OperationOutput): void {
    const member = output.CiphertextBlob instanceof Buffer ? "CiphertextBlob" : "Plaintext";
    const bytes = output[member];
    if (!(bytes instanceof Buffer)) return;
    const mode = this.#corruptions.shift();
    if (mode === "flip") bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) ^ 0x01;
    if (mode === "truncate") output[member] = bytes.subarray(0, bytes.length - 1);
  }

  // Resolves true after the delay, false if the client went away or the emulator closed.
  #sleep(milliseconds: number, response: ServerResponse): Promise<boolean> {
    return new Promise((resolve) => {
      const finish = (completed: boolean) => {
        clearTimeout(timer);
        this.#sleepers.delete(wake);
        response.off("close", wake);
        resolve(completed && !this.#closed && !response.destroyed);
      };
      const wake = () => finish(false);
      const timer = setTimeout(() => finish(true), milliseconds);
      this.#sleepers.add(wake);
      response.once("close", wake);
    });
  }
}

function emptyCounters(): Record<Operation, number> {
  return Object.fromEntries(OPERATIONS.map((operation) => [operation, 0])) as Record<
    Operation,
    number
  >;
}

function checkCount(count: number, queued: number): void {
  if (!Number.isInteger(count) || count < 0 || queued + count > MAX_SCRIPTED) {
    throw new RangeError(`count must be an integer; at most ${MAX_SCRIPTED} may be queued`);
  }
}

function route(request: IncomingMessage): Operation {
  const target = request.headers["x-amz-target"];
  const name =
    typeof target === "string" && target.startsWith(TARGET_PREFIX)
      ? target.slice(TARGET_PREFIX.length)
      : "";
  const operation = OPERATIONS.find((candidate) => candidate === name);
  if (request.method !== "POST" || operation === undefined) {
    throw new KmsServiceError("UnknownOperationException", 400);
  }
  if (!(request.headers["content-type"] ?? "").startsWith(JSON_CONTENT_TYPE)) {
    throw new KmsServiceError(
      "SerializationException",
      400,
      `Content-Type must be ${JSON_CONTENT_TYPE}`,
    );
  }
  return operation;
}

function parseInput(body: Buffer): Record<string, unknown> {
  let input: unknown;
  try {
    input = JSON.parse(body.toString("utf8") || "{}");
  } catch {
    throw new KmsServiceError(
      "SerializationException",
      400,
      "Start of structure or map found where not expected.",
    );
  }
  if (typeof input !== "object" || input === null || Array.isArray(input)) {
    throw new KmsServiceError("SerializationException", 400, "Request body must be a JSON object.");
  }
  return input as Record<string, unknown>;
}

function encodeOutput(output: OperationOutput): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(output).map(([name, value]) => [
      name,
      value instanceof Buffer ? value.toString("base64") : value,
    ]),
  );
}

function readBody(request: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    request.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reject(
          new KmsServiceError("RequestEntityTooLargeException", 413, "Request body too large."),
        );
        request.destroy();
        return;
      }
      chunks.push(chunk);
    });
    request.on("end", () => resolve(Buffer.concat(chunks)));
    request.on("error", reject);
  });
}

function send(response: ServerResponse, status: number, requestId: string, body: unknown): void {
  if (response.headersSent || response.destroyed) return;
  const payload = Buffer.from(JSON.stringify(body), "utf8");
  response.writeHead(status, {
    "Content-Type": JSON_CONTENT_TYPE,
    "Content-Length": payload.length,
    "x-amzn-RequestId": requestId,
  });
  response.end(payload);
}
