import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";

/** One Vault API request: a path under `/v1/`, with the token and namespace it runs under. */
interface VaultRequest {
  method: "GET" | "POST";
  /** Path under `/v1/`, e.g. `transit/encrypt/kek`. */
  path: string;
  token?: string | undefined;
  namespace?: string | undefined;
  body?: Record<string, unknown> | undefined;
  signal: AbortSignal;
}

/** The JSON envelope Vault answers with (any of these may be absent). */
export interface VaultBody {
  data?: unknown;
  auth?: unknown;
  errors?: unknown;
  warnings?: unknown;
}

/** Vault's answer: status, parsed body (undefined when not JSON) and Retry-After, if any. */
export interface VaultReply {
  status: number;
  body: VaultBody | undefined;
  retryAfterMs: number | undefined;
}

const MAX_RESPONSE_BYTES = 1024 * 1024;

/**
 * The provider's HTTP client: node:http(s) with one keep-alive agent, so the CA file, the TLS
 * server name and TLS 1.2+ apply to every request and no SDK is needed. Redirects are not
 * followed: a standby's redirect would carry the token to another address.
 */
export class VaultHttp {
  readonly address: string;
  readonly #base: URL;
  readonly #agent: HttpAgent | HttpsAgent;
  readonly #request: typeof httpsRequest;

  constructor(address: string, tls: { ca?: string | undefined; serverName?: string | undefined }) {
    this.address = address;
    this.#base = new URL(`${address.replace(/\/+$/, "")}/v1/`);
    const secure = this.#base.protocol === "https:";
    // Enough sockets for a burst of unwraps at start-up without opening hundreds of connections.
    const pool = { keepAlive: true, maxSockets: 32 };
    this.#agent = secure
      ? new HttpsAgent({
          ...pool,
          minVersion: "TLSv1.2",
          ...(tls.ca !== undefined && { ca: tls.ca }),
          ...(tls.serverName !== undefined && { servername: tls.serverName }),
        })
      : new HttpAgent(pool);
    this.#request = secure ? httpsRequest : (httpRequest as typeof httpsRequest);
  }

  /** Sends one request; rejects only when no HTTP answer arrived (network, TLS, abort). */
  send(request: VaultRequest): Promise<VaultReply> {
    const url = new URL(request.path, this.#base);
    const payload =
      request.body === undefined ? undefined : Buffer.from(JSON.stringify(request.body));
    const headers: Record<string, string> = { "X-Vault-Request": "true" };
    if (request.token !== undefined) headers["X-Vault-Token"] = request.token;
    if (request.namespace !== undefined && request.namespace !== "")
      headers["X-Vault-Namespace"] = request.namespace;
    if (payload !== undefined) {
      headers["Content-Type"] = "application/json";
      headers["Content-Length"] = String(payload.length);
    }
    return new Promise<VaultReply>((resolve, reject) => {
      const outgoing = this.#request(
        url,
        { method: request.method, agent: this.#agent, headers, signal: request.signal },
        (response) => {
          readReply(response).then(resolve, reject);
        },
      );
      outgoing.on("error", reject);
      outgoing.end(payload, () => {
        // The body may hold a base64 key: it is not kept once written.
        payload?.fill(0);
      });
    });
  }

  /** Closes idle connections; requests in flight finish. */
  close(): void {
    this.#agent.destroy();
  }
}

async function readReply(response: IncomingMessage): Promise<VaultReply> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of response) {
    size += (chunk as Buffer).length;
    if (size > MAX_RESPONSE_BYTES) {
      response.destroy();
      throw new Error(`Vault's answer is larger than ${MAX_RESPONSE_BYTES} bytes`);
    }
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks);
  let body: VaultBody | undefined;
  try {
    const parsed: unknown = text.length === 0 ? undefined : JSON.parse(text.toString("utf8"));
    body = typeof parsed === "object" && parsed !== null ? (parsed as VaultBody) : undefined;
  } catch {
    body = undefined;
  } finally {
    // A decrypt answer holds the key in base64; the parsed copy is the caller's to drop.
    text.fill(0);
    for (const chunk of chunks) chunk.fill(0);
  }
  const retryAfter = Number(response.headers["retry-after"]);
  return {
    status: response.statusCode ?? 0,
    body,
    retryAfterMs: Number.isFinite(retryAfter) && retryAfter >= 0 ? retryAfter * 1000 : undefined,
  };
}

/** The error strings of a Vault answer (`{"errors": [...]}`), one line each, bounded. */
export function vaultErrors(body: VaultBody | undefined): string[] {
  const errors = Array.isArray(body?.errors) ? body.errors : [];
  return errors
    .filter((error): error is string => typeof error === "string")
    .map((error) => error.replace(/\s+/g, " ").trim().slice(0, 300));
}
