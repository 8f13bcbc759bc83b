import { randomBytes, randomUUID } from "node:crypto";
import type { EncryptResponse__Output } from "../../wire/generated/v2/EncryptResponse.js";
import type { StatusResponse__Output } from "../../wire/generated/v2/StatusResponse.js";
import type { CallResult } from "../../wire/unary-connection.js";
import { failureText, PluginClient } from "../plugin-client.js";
import { pluginAddress } from "../plugin-endpoint.js";
import type { Findings } from "../report.js";

/** The apiserver always encrypts a 32-byte seed (KMS v2) or DEK (v1). */
export const SEED_BYTES = 32;

/** Knobs of a plugin run. */
export interface PluginRunOptions {
  /** `unix:///path.sock`, `unix:///@abstract` or a socket path. */
  endpoint: string;
  /** Deadline of each call; kube-apiserver's default `timeout` is 3 s. */
  timeoutMs?: number;
  /** Encrypt→Decrypt round trips in flight at once in the concurrency rule. Default 64. */
  concurrency?: number;
  /** Sequential calls of each kind measured by the latency rule. Default 50. */
  latencySamples?: number;
  /** Also check the deprecated v1beta1 API on the same socket. */
  v1?: boolean;
}

/** The state a plugin run shares between rules: the client and the first answers. */
export class PluginRun {
  readonly client: PluginClient;
  readonly timeoutMs: number;
  readonly concurrency: number;
  readonly latencySamples: number;
  readonly v1: boolean;
  #status: Promise<CallResult<StatusResponse__Output>> | undefined;
  #encrypt: Promise<{ seed: Buffer; result: CallResult<EncryptResponse__Output> }> | undefined;

  constructor(options: PluginRunOptions) {
    this.timeoutMs = options.timeoutMs ?? 3000;
    this.concurrency = options.concurrency ?? 64;
    this.latencySamples = options.latencySamples ?? 50;
    this.v1 = options.v1 ?? false;
    this.client = new PluginClient(pluginAddress(options.endpoint), this.timeoutMs);
  }

  status(): Promise<CallResult<StatusResponse__Output>> {
    return this.client.call<StatusResponse__Output>("v2", "Status", {});
  }

  /** The first Status answer of the run, which the Status rules judge. */
  firstStatus(): Promise<CallResult<StatusResponse__Output>> {
    this.#status ??= this.status();
    return this.#status;
  }

  /** Encrypts a random 32-byte seed with a new uid, as the apiserver does. */
  async encrypt(
    plaintext: Buffer = randomBytes(SEED_BYTES),
  ): Promise<CallResult<EncryptResponse__Output>> {
    return this.client.call<EncryptResponse__Output>("v2", "Encrypt", {
      plaintext,
      uid: randomUUID(),
    });
  }

  /** Decrypts with everything Encrypt returned, as the apiserver does. */
  decrypt(
    answer: EncryptResponse__Output,
    ciphertext = answer.ciphertext,
  ): Promise<CallResult<Buffer>> {
    return this.client
      .call<{ plaintext: Buffer }>("v2", "Decrypt", {
        ciphertext,
        uid: randomUUID(),
        key_id: answer.key_id,
        annotations: answer.annotations,
      })
      .then((result) => (result.ok ? { ...result, value: result.value.plaintext } : result));
  }

  /** The first seed Encrypt of the run, which the Encrypt rules judge. */
  firstEncrypt(): Promise<{ seed: Buffer; result: CallResult<EncryptResponse__Output> }> {
    this.#encrypt ??= (async () => {
      const seed = randomBytes(SEED_BYTES);
      return { seed, result: await this.encrypt(seed) };
    })();
    return this.#encrypt;
  }

  close(): void {
    this.client.close();
  }
}

export function quoted(text: string): string {
  return JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}…` : text);
}

// Checks that the plugin still answers after something that might have killed it.
export async function stillAnswers(
  run: PluginRun,
  findings: Findings,
  after: string,
): Promise<boolean> {
  const status = await run.status();
  if (status.ok) return true;
  findings.fail(
    `after ${after} the plugin no longer answers Status: ${failureText(status)} (crashed?)`,
  );
  return false;
}
