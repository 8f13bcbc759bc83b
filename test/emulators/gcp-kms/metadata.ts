import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/** What the key service makes of a bearer token: issued here and unexpired, expired, unknown. */
export type TokenVerdict = "valid" | "expired" | "unknown";

const BASE = "/computeMetadata/v1";
const TOKEN_PATH = `${BASE}/instance/service-accounts/default/token`;
const MAX_ISSUED = 1_000;

/**
 * The GCE / GKE metadata server as google-auth-library reaches it through GCE_METADATA_HOST:
 * plain HTTP, every request and answer carrying `Metadata-Flavor: Google`, the default service
 * account's access token as JSON `access_token`, `expires_in` (seconds) and `token_type`, and
 * the few values the client library reads besides (project id, universe domain, account email).
 * Tokens live `lifetimeSeconds` (the real server's last about an hour); stop() plays a pod whose
 * Kubernetes service account lost its Google service account binding.
 */
export class MetadataServer {
  /** GCE_METADATA_HOST: `127.0.0.1:<port>`. */
  readonly host: string;
  /** The default service account the tokens stand for. */
  readonly email = "kms-envelope@kms-envelope-test.iam.gserviceaccount.com";
  /** How long tokens issued from now on live, in seconds. */
  lifetimeSeconds = 3600;
  /** Tokens issued so far. */
  issued = 0;
  /** Token requests refused so far. */
  refused = 0;
  readonly #server: Server;
  readonly #tokens = new Map<string, number>();
  #stopped = false;

  private constructor(server: Server) {
    this.#server = server;
    this.host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
    server.on("request", (request: IncomingMessage, response: ServerResponse) => {
      request.resume();
      this.#answer(request, response);
    });
  }

  /** Listens on an ephemeral 127.0.0.1 port. */
  static async start(): Promise<MetadataServer> {
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    return new MetadataServer(server);
  }

  /** Whether a bearer token was issued here, and whether it has expired. */
  verdict(token: string): TokenVerdict {
    const expiresAt = this.#tokens.get(token);
    if (expiresAt === undefined) return "unknown";
    return Date.now() < expiresAt ? "valid" : "expired";
  }

  /** Refuses token requests (403) until resume(); tokens issued stay valid until they expire. */
  stop(): void {
    this.#stopped = true;
  }

  /** Issues tokens again. */
  resume(): void {
    this.#stopped = false;
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#server.closeAllConnections();
    await closed;
  }

  #answer(request: IncomingMessage, response: ServerResponse): void {
    const send = (status: number, body: string, type = "application/text") => {
      response.writeHead(status, { "Metadata-Flavor": "Google", "content-type": type });
      response.end(body);
    };
    const path = new URL(request.url ?? "/", "http://metadata").pathname.replace(/\/$/, "");
    if (request.headers["metadata-flavor"] !== "Google") {
      send(403, "Missing Metadata-Flavor:Google header.");
      return;
    }
    if (path === TOKEN_PATH) {
      if (this.#stopped) {
        this.refused += 1;
        send(
          403,
          "The Kubernetes service account is not bound to a Google service account (emulator).",
        );
        return;
      }
      const token = randomBytes(32).toString("base64url");
      this.#tokens.set(token, Date.now() + this.lifetimeSeconds * 1000);
      if (this.#tokens.size > MAX_ISSUED) {
        this.#tokens.delete(this.#tokens.keys().next().value as string);
      }
      this.issued += 1;
      send(
        200,
        JSON.stringify({
          access_token: token,
          expires_in: this.lifetimeSeconds,
          token_type: "Bearer",
        }),
        "application/json",
      );
      return;
    }
    const values: Record<string, string> = {
      [`${BASE}/instance`]: "",
      [`${BASE}/project/project-id`]: "kms-envelope-test",
      [`${BASE}/universe/universe-domain`]: "googleapis.com",
      [`${BASE}/instance/service-accounts/default/email`]: this.email,
    };
    const value = values[path];
    if (value === undefined) send(404, "Not found.");
    else send(200, value);
  }
}
