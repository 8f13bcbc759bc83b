import {
  type Metadata,
  Server,
  ServerCredentials,
  type ServerUnaryCall,
  type sendUnaryData,
  status,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";
import { grpc } from "google-gax";
import {
  CORRUPTION_METHOD,
  type Corruption,
  FaultPlan,
  KMS_METHODS,
  type KmsMethod,
} from "./faults.js";
import { KeyStore, KmsStatusError } from "./key-store.js";
import type { TokenVerdict } from "./metadata.js";
import * as operations from "./operations.js";
import { loadKeyManagementService } from "./protos.js";

/** What one call sent and how it ended, so tests can assert the CRC32C protocol was followed. */
export interface RecordedCall {
  method: KmsMethod;
  name: string;
  /** Which request checksums were present (Encrypt: plaintext and AAD; Decrypt: ciphertext and AAD). */
  sentChecksums: { plaintext: boolean; ciphertext: boolean; aad: boolean };
  /** Status code name, "OK" on success. */
  code: string;
  /** Encrypt: the version that encrypted (EncryptResponse.name). */
  version?: string;
  /** Decrypt: whether the primary version decrypted (DecryptResponse.used_primary). */
  usedPrimary?: boolean;
}

/** How the emulator is started; plain gRPC without authentication by default. */
export interface GcpKmsEmulatorOptions {
  /** Serves TLS with this key and certificate: clients attach OAuth tokens to secure channels only. */
  tls?: { key: string; cert: string };
  /** Requires `authorization: Bearer <token>` on every call, judged by this (a metadata server). */
  authorize?: (token: string) => TokenVerdict;
}

// Google APIs' words for a missing, unknown or expired access token (UNAUTHENTICATED).
const UNAUTHENTICATED_MESSAGE =
  "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.";

const PERMISSION: Record<KmsMethod, string> = {
  Encrypt: "cloudkms.cryptoKeyVersions.useToEncrypt",
  Decrypt: "cloudkms.cryptoKeyVersions.useToDecrypt",
  GetCryptoKey: "cloudkms.cryptoKeys.get",
  GetCryptoKeyVersion: "cloudkms.cryptoKeyVersions.get",
};

/**
 * A local Cloud KMS: a real gRPC server for `google.cloud.kms.v1.KeyManagementService`
 * (CLOUD-PROTOCOLS.md B.3) so `@google-cloud/kms` is exercised unmodified, with a control API
 * to rotate and disable key versions and to inject denial, throttling, outages, delay and
 * in-transit corruption.
 */
export class GcpKmsEmulator {
  /** Calls received per method, failed ones included. */
  readonly calls: Record<KmsMethod, number> = {
    Encrypt: 0,
    Decrypt: 0,
    GetCryptoKey: 0,
    GetCryptoKeyVersion: 0,
  };
  /** Every call, in order. */
  readonly log: RecordedCall[] = [];
  /** Calls refused UNAUTHENTICATED, and those of them that carried an expired token. */
  readonly refusedTokens = { total: 0, expired: 0 };
  readonly #store = new KeyStore();
  readonly #faults = new FaultPlan();
  readonly #server: Server;
  readonly #authorize: ((token: string) => TokenVerdict) | undefined;
  readonly #sleepers = new Set<{ timer: NodeJS.Timeout; wake: () => void }>();
  #denied = new Set<KmsMethod>();
  #delay: { milliseconds: number; methods: ReadonlySet<KmsMethod> } | undefined;
  #port = 0;

  private constructor(server: Server, authorize: ((token: string) => TokenVerdict) | undefined) {
    this.#server = server;
    this.#authorize = authorize;
  }

  /** Starts an emulator on 127.0.0.1 and a free port. */
  static async start(options: GcpKmsEmulatorOptions = {}): Promise<GcpKmsEmulator> {
    const emulator = new GcpKmsEmulator(new Server(), options.authorize);
    emulator.#server.addService(loadKeyManagementService(), emulator.#implementation());
    const { tls } = options;
    const credentials =
      tls === undefined
        ? ServerCredentials.createInsecure()
        : ServerCredentials.createSsl(
            null,
            [{ private_key: Buffer.from(tls.key), cert_chain: Buffer.from(tls.cert) }],
            false,
          );
    emulator.#port = await new Promise<number>((resolve, reject) => {
      emulator.#server.bindAsync("127.0.0.1:0", credentials, (error, port) =>
        error ? reject(error) : resolve(port),
      );
    });
    return emulator;
  }

  /** The bound port. */
  get port(): number {
    return this.#port;
  }

  /**
   * Options for `new KeyManagementServiceClient(...)`: insecure credentials from google-gax's
   * own grpc (the @grpc/grpc-js instance the client checks them against), and an explicit
   * universe domain — without it google-gax 5 asks google-auth for one before using sslCreds,
   * which runs the ADC lookup (a metadata-server probe) against a local emulator.
   */
  clientOptions(): {
    apiEndpoint: string;
    port: number;
    sslCreds: grpc.ChannelCredentials;
    universeDomain: string;
  } {
    return {
      apiEndpoint: "127.0.0.1",
      port: this.#port,
      sslCreds: grpc.credentials.createInsecure(),
      universeDomain: "googleapis.com",
    };
  }

  /** Creates a CryptoKey (ENCRYPT_DECRYPT) with version 1 as primary; returns that version. */
  createKey(name: string): string {
    return this.#store.createKey(name);
  }

  /** Adds a version that becomes primary (a rotation); returns its name. */
  addVersion(keyName: string): string {
    return this.#store.addVersion(keyName);
  }

  /** Makes an existing version primary again. */
  setPrimary(versionName: string): void {
    this.#store.setPrimary(versionName);
  }

  /** Disables a version: Encrypt and Decrypt with it fail with FAILED_PRECONDITION. */
  disableVersion(versionName: string): void {
    this.#store.setState(versionName, "DISABLED");
  }

  /** Re-enables a disabled version. */
  enableVersion(versionName: string): void {
    this.#store.setState(versionName, "ENABLED");
  }

  /**
   * Destroys a version's key material for good (the state the real service reaches after the
   * scheduled-destruction period): it fails with FAILED_PRECONDITION and cannot be re-enabled.
   */
  destroyVersion(versionName: string): void {
    this.#store.setState(versionName, "DESTROYED");
  }

  /** Refuses the given methods (default: all) with PERMISSION_DENIED until `allowAccess()`. */
  denyAccess(methods: readonly KmsMethod[] = KMS_METHODS): void {
    this.#denied = new Set(methods);
  }

  /** Lifts `denyAccess()`. */
  allowAccess(): void {
    this.#denied = new Set();
  }

  /** Answers the next `count` calls (Infinity: until cleared) with RESOURCE_EXHAUSTED. */
  throttleNext(count: number, methods: readonly KmsMethod[] = KMS_METHODS): void {
    const message =
      "Quota exceeded for quota metric 'Cryptographic requests' and limit 'Cryptographic requests per minute' of service 'cloudkms.googleapis.com'.";
    this.#faults.add({ kind: "status", code: status.RESOURCE_EXHAUSTED, message }, count, methods);
  }

  /** Answers the next `count` calls with UNAVAILABLE (an outage) or INTERNAL. */
  failNext(
    count: number,
    code: "UNAVAILABLE" | "INTERNAL" = "UNAVAILABLE",
    methods: readonly KmsMethod[] = KMS_METHODS,
  ): void {
    const message =
      code === "UNAVAILABLE"
        ? "The service is currently unavailable."
        : "Internal error encountered.";
    this.#faults.add({ kind: "status", code: status[code], message }, count, methods);
  }

  /** Damages the next `count` responses of the method the corruption applies to. */
  corruptNext(corruption: Corruption, count = 1): void {
    this.#faults.add({ kind: "corrupt", corruption }, count, [CORRUPTION_METHOD[corruption]]);
  }

  /** Delays every call of `methods` by `milliseconds` before answering (0 turns it off). */
  setDelay(milliseconds: number, methods: readonly KmsMethod[] = KMS_METHODS): void {
    this.#delay = milliseconds > 0 ? { milliseconds, methods: new Set(methods) } : undefined;
  }

  /** Drops scheduled faults, the delay and any denial. */
  clearFaults(): void {
    this.#faults.clear();
    this.#delay = undefined;
    this.allowAccess();
  }

  /** Stops the server at once, wakes delayed calls and wipes the key material. */
  async close(): Promise<void> {
    for (const sleeper of this.#sleepers) {
      clearTimeout(sleeper.timer);
      sleeper.wake();
    }
    this.#sleepers.clear();
    this.#server.forceShutdown();
    this.#store.wipe();
  }

  #implementation(): UntypedServiceImplementation {
    const unary =
      (method: KmsMethod, run: (request: never) => object) =>
      (call: ServerUnaryCall<Record<string, unknown>, object>, callback: sendUnaryData<object>) => {
        this.#serve(method, call.request, run, call.metadata).then(
          (response) => callback(null, response),
          (error: unknown) => {
            const known = error instanceof KmsStatusError;
            callback({
              code: known ? error.code : status.INTERNAL,
              details: known ? error.message : `emulator bug: ${String(error)}`,
            });
          },
        );
      };
    const store = this.#store;
    // Methods left out here answer UNIMPLEMENTED (grpc-js's default handler).
    return {
      Encrypt: unary("Encrypt", (request: operations.EncryptRequest) =>
        operations.encrypt(store, request),
      ),
      Decrypt: unary("Decrypt", (request: operations.DecryptRequest) =>
        operations.decrypt(store, request),
      ),
      GetCryptoKey: unary("GetCryptoKey", (request: { name?: string }) =>
        operations.getCryptoKey(store, request),
      ),
      GetCryptoKeyVersion: unary("GetCryptoKeyVersion", (request: { name?: string }) =>
        operations.getCryptoKeyVersion(store, request),
      ),
    };
  }

  async #serve(
    method: KmsMethod,
    request: Record<string, unknown>,
    run: (request: never) => object,
    metadata: Metadata,
  ): Promise<object> {
    this.calls[method] += 1;
    const name = typeof request.name === "string" ? request.name : "";
    const entry: RecordedCall = {
      method,
      name,
      sentChecksums: {
        plaintext: present(request.plaintextCrc32c),
        ciphertext: present(request.ciphertextCrc32c),
        aad: present(request.additionalAuthenticatedDataCrc32c),
      },
      code: "OK",
    };
    this.log.push(entry);
    try {
      this.#authenticate(metadata);
      if (this.#delay?.methods.has(method)) await this.#sleep(this.#delay.milliseconds);
      if (this.#denied.has(method)) {
        throw new KmsStatusError(
          status.PERMISSION_DENIED,
          `Permission '${PERMISSION[method]}' denied on resource '${name}' (or it may not exist).`,
        );
      }
      const fault = this.#faults.take(method);
      if (fault?.kind === "status") throw new KmsStatusError(fault.code, fault.message);
      if (fault?.kind === "corrupt") corrupt("request", request, fault.corruption);
      const response = run(request as never) as Record<string, unknown>;
      if (fault?.kind === "corrupt") corrupt("response", response, fault.corruption);
      if (typeof response.usedPrimary === "boolean") entry.usedPrimary = response.usedPrimary;
      else if (method === "Encrypt" && typeof response.name === "string")
        entry.version = response.name;
      return response;
    } catch (error) {
      entry.code = error instanceof KmsStatusError ? (status[error.code] ?? "UNKNOWN") : "INTERNAL";
      throw error;
    }
  }

  #authenticate(metadata: Metadata): void {
    if (this.#authorize === undefined) return;
    const bearer = /^Bearer (\S+)$/.exec(String(metadata.get("authorization")[0] ?? ""))?.[1];
    const verdict = bearer === undefined ? "unknown" : this.#authorize(bearer);
    if (verdict === "valid") return;
    this.refusedTokens.total += 1;
    if (verdict === "expired") this.refusedTokens.expired += 1;
    throw new KmsStatusError(status.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE);
  }

  #sleep(milliseconds: number): Promise<void> {
    return new Promise((resolve) => {
      const sleeper = {
        timer: setTimeout(() => {
          this.#sleepers.delete(sleeper);
          resolve();
        }, milliseconds),
        wake: resolve,
      };
      this.#sleepers.add(sleeper);
    });
  }
}

function present(value: unknown): boolean {
  return value !== undefined && value !== null;
}

// Damage that a checksum must catch: a byte changes, its CRC32C stays as the sender computed
// it. Request corruptions hit the request before the server verifies it; the others hit the
// response after the server checksummed it.
function corrupt(
  phase: "request" | "response",
  message: Record<string, unknown>,
  corruption: Corruption,
): void {
  const target = CORRUPTED_FIELD[corruption];
  if (target.phase !== phase) return;
  const value = message[target.field];
  if (typeof value === "boolean") {
    message[target.field] = false;
  } else if (Buffer.isBuffer(value) && value.length > 0) {
    value[value.length - 1] = (value[value.length - 1] as number) ^ 0x01;
  }
}

const CORRUPTED_FIELD: Record<Corruption, { phase: "request" | "response"; field: string }> = {
  ciphertext: { phase: "response", field: "ciphertext" },
  plaintext: { phase: "response", field: "plaintext" },
  verifiedPlaintextCrc32c: { phase: "response", field: "verifiedPlaintextCrc32c" },
  verifiedAdditionalAuthenticatedDataCrc32c: {
    phase: "response",
    field: "verifiedAdditionalAuthenticatedDataCrc32c",
  },
  requestPlaintext: { phase: "request", field: "plaintext" },
  requestCiphertext: { phase: "request", field: "ciphertext" },
};
