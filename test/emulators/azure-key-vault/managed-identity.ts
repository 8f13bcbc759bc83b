import { randomBytes, randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";

/** One token request the managed-identity endpoint saw. */
export interface RecordedTokenRequest {
  readonly method: string;
  readonly path: string;
  readonly apiVersion: string | undefined;
  /** The `resource` query parameter (the scope without `/.default`). */
  readonly resource: string | undefined;
  /** User-assigned identity selector, when one was sent (`client_id`, `mi_res_id`, `object_id`). */
  readonly identity: string | undefined;
  /** Whether `X-IDENTITY-HEADER` carried the secret. */
  readonly headerValid: boolean;
  readonly status: number;
}

/** What the endpoint reports to the emulator. */
export interface IdentityObserver {
  onTokenRequest(entry: RecordedTokenRequest): void;
}

/** The path of the endpoint: IDENTITY_ENDPOINT is `http://127.0.0.1:<port>` + this. */
export const TOKEN_PATH = "/msi/token";
/** The only API version of the App Service source in MSAL Node (`APP_SERVICE_MSI_API_VERSION`). */
export const APP_SERVICE_API_VERSION = "2019-08-01";
/** App Service managed-identity tokens live 24 hours unless a test shortens them. */
const TOKEN_LIFETIME_SECONDS = 24 * 3600;

/** What the vault makes of a bearer token: issued here and unexpired, expired, or unknown. */
export type TokenVerdict = "valid" | "expired" | "unknown";
const MAX_ISSUED = 1_000;

/**
 * The Azure App Service managed-identity token endpoint (IDENTITY_ENDPOINT + IDENTITY_HEADER),
 * plain HTTP on 127.0.0.1 as on App Service, in the form MSAL Node 6's `AppService` source
 * calls it: `GET <IDENTITY_ENDPOINT>?api-version=2019-08-01&resource=<resource>` (plus
 * `client_id` / `mi_res_id` / `object_id` for a user-assigned identity) with the secret in
 * `X-IDENTITY-HEADER`. The answer is the service's JSON: `access_token`, `expires_on` (epoch
 * seconds, as a string), `resource`, `token_type: "Bearer"`, `client_id`; errors are
 * `{"statusCode", "message", "correlationId"}`, whose `message` MSAL turns into a ServerError.
 * Every token is random and remembered with its resource and expiry: the vault accepts only
 * tokens issued here for its own resource.
 */
export class ManagedIdentityEndpoint {
  /** IDENTITY_ENDPOINT: `http://127.0.0.1:<port>/msi/token`. */
  readonly endpoint: string;
  /** IDENTITY_HEADER: the secret the endpoint requires in `X-IDENTITY-HEADER`. */
  readonly header: string;
  /** The client id reported for the (system-assigned) identity. */
  readonly clientId = randomUUID();
  /** The identity as the vault names it when it refuses a request: application and object id. */
  readonly principal = { appId: this.clientId, objectId: randomUUID() };
  readonly #server: Server;
  readonly #observer: IdentityObserver;
  /** How long the tokens issued from now on live, in seconds. */
  tokenLifetimeSeconds = TOKEN_LIFETIME_SECONDS;
  readonly #issued = new Map<string, { resource: string; expiresAt: number }>();
  // Set while the identity is gone (removed from the resource): every request is refused.
  #refusal: string | undefined;

  private constructor(server: Server, header: string, observer: IdentityObserver) {
    this.#server = server;
    this.header = header;
    this.#observer = observer;
    this.endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}${TOKEN_PATH}`;
    server.on("request", (request: IncomingMessage, response: ServerResponse) => {
      this.#handle(request, response);
    });
  }

  /** Listens on an ephemeral 127.0.0.1 port. */
  static async start(
    observer: IdentityObserver,
    header = randomBytes(24).toString("base64url"),
  ): Promise<ManagedIdentityEndpoint> {
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    return new ManagedIdentityEndpoint(server, header, observer);
  }

  /** Whether `token` was issued here for `resource`, and whether it has expired. */
  verdict(token: string, resource: string): TokenVerdict {
    const issued = this.#issued.get(token);
    if (issued === undefined || !sameResource(issued.resource, resource)) return "unknown";
    return Date.now() < issued.expiresAt ? "valid" : "expired";
  }

  /** Refuses every token request with 400 and this message (the identity was removed). */
  refuse(message: string): void {
    this.#refusal = message;
  }

  /** Issues tokens again. */
  resume(): void {
    this.#refusal = undefined;
  }

  /** Forgets every issued token: clients holding one get 401 from the vault. */
  revokeTokens(): void {
    this.#issued.clear();
  }

  /** Makes every token issued so far expired, as if its lifetime had passed. */
  expireTokens(): void {
    for (const issued of this.#issued.values()) issued.expiresAt = 0;
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#server.closeAllConnections();
    await closed;
  }

  #handle(request: IncomingMessage, response: ServerResponse): void {
    request.resume();
    const url = new URL(request.url ?? "/", "http://127.0.0.1");
    const header = request.headers["x-identity-header"];
    const query = (name: string) => url.searchParams.get(name) ?? undefined;
    const seen = {
      method: request.method ?? "",
      path: url.pathname,
      apiVersion: query("api-version"),
      resource: query("resource"),
      identity: query("client_id") ?? query("mi_res_id") ?? query("object_id"),
      headerValid: header === this.header,
    };
    const { status, body } = this.#answer(seen, header, query("client_id"));
    this.#observer.onTokenRequest({ ...seen, status });
    response.writeHead(status, {
      "content-type": "application/json; charset=utf-8",
      "cache-control": "no-store",
    });
    response.end(JSON.stringify(body));
  }

  #answer(
    request: Omit<RecordedTokenRequest, "status">,
    header: string | string[] | undefined,
    clientId: string | undefined,
  ): { status: number; body: Record<string, unknown> } {
    const fail = (status: number, message: string) => ({
      status,
      body: { statusCode: status, message, correlationId: randomUUID() },
    });
    if (request.path !== TOKEN_PATH) return fail(404, "Not found.");
    if (request.method !== "GET")
      return fail(405, `The endpoint does not serve ${request.method}.`);
    if (!request.headerValid) {
      return fail(
        401,
        header === undefined
          ? "The X-IDENTITY-HEADER header is missing."
          : "The X-IDENTITY-HEADER header is not valid.",
      );
    }
    if (request.apiVersion !== APP_SERVICE_API_VERSION) {
      return fail(400, `The api-version ${request.apiVersion ?? "(none)"} is not supported.`);
    }
    if (request.resource === undefined || request.resource === "") {
      return fail(400, "The resource parameter is required.");
    }
    if (this.#refusal !== undefined) return fail(400, this.#refusal);
    const token = randomBytes(32).toString("base64url");
    const expiresOn = Math.floor(Date.now() / 1000) + this.tokenLifetimeSeconds;
    this.#issued.set(token, { resource: request.resource, expiresAt: expiresOn * 1000 });
    if (this.#issued.size > MAX_ISSUED) {
      this.#issued.delete(this.#issued.keys().next().value as string);
    }
    return {
      status: 200,
      body: {
        access_token: token,
        expires_on: String(expiresOn),
        resource: request.resource,
        token_type: "Bearer",
        client_id: clientId ?? this.clientId,
      },
    };
  }
}

// `https://vault.azure.net` and `https://vault.azure.net/` name the same audience.
function sameResource(a: string, b: string): boolean {
  return a.replace(/\/+$/, "").toLowerCase() === b.replace(/\/+$/, "").toLowerCase();
}
