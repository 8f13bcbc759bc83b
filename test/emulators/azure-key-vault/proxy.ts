import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer, type Server } from "node:http";
import { type AddressInfo, connect, type Socket } from "node:net";
import type { Duplex } from "node:stream";

/** One request the proxy saw: a CONNECT (tunnel) or anything else (always refused). */
export interface RecordedProxyRequest {
  readonly method: string;
  /** `host:port` of a CONNECT, the request target otherwise (bounded). */
  readonly target: string;
  /** Whether the proxy agreed to tunnel (a CONNECT to `*.vault.azure.net:443`). */
  readonly allowed: boolean;
  /** 200 once the tunnel is open, 403 when refused, 502 when the emulator was unreachable. */
  status: number;
}

/** What the proxy reports to the emulator. */
export interface ProxyObserver {
  onRequest(entry: RecordedProxyRequest): void;
}

// One DNS label under vault.azure.net, exactly what the emulator's `*.vault.azure.net`
// certificate covers (a wildcard matches one label). Port 443 only: the vault's HTTPS port.
const VAULT_AUTHORITY = /^([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.vault\.azure\.net):443$/i;
const MAX_TARGET_CHARS = 300;

/**
 * A forward proxy for the daemon's `HTTPS_PROXY`, as a corporate egress proxy would be: on
 * 127.0.0.1, it answers `CONNECT <name>.vault.azure.net:443` by tunnelling the bytes to the
 * emulator's TLS server (also on loopback), so the client does real TLS with the vault host
 * name (SNI, certificate name check, challenge-resource check) end to end. Every other
 * CONNECT target, and every plain (absolute-form) proxy request, is refused with 403: the proxy
 * never opens a connection anywhere but the emulator, which also makes it an egress guard for
 * whatever else the SDK might try to reach (login.microsoftonline.com, IMDS).
 */
export class VaultConnectProxy {
  /** `http://127.0.0.1:<port>`: the HTTPS_PROXY value. */
  readonly url: string;
  readonly #server: Server;
  readonly #upstreamPort: number;
  readonly #observer: ProxyObserver;
  readonly #sockets = new Set<Duplex>();

  private constructor(server: Server, upstreamPort: number, observer: ProxyObserver) {
    this.#server = server;
    this.#upstreamPort = upstreamPort;
    this.#observer = observer;
    this.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    server.on("connect", (request: IncomingMessage, socket: Duplex, head: Buffer) => {
      this.#tunnel(request, socket, head);
    });
    server.on("request", (request: IncomingMessage, response: ServerResponse) => {
      this.#refuseRequest(request, response);
    });
    server.on("clientError", (_error, socket: Duplex) => socket.destroy());
  }

  /** Listens on an ephemeral 127.0.0.1 port; tunnels go to 127.0.0.1:`upstreamPort`. */
  static async start(upstreamPort: number, observer: ProxyObserver): Promise<VaultConnectProxy> {
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    return new VaultConnectProxy(server, upstreamPort, observer);
  }

  /** Stops listening and tears down every open tunnel. */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const socket of this.#sockets) socket.destroy();
    this.#sockets.clear();
    this.#server.closeAllConnections();
    await closed;
  }

  #tunnel(request: IncomingMessage, client: Duplex, head: Buffer): void {
    const target = (request.url ?? "").slice(0, MAX_TARGET_CHARS);
    const allowed = VAULT_AUTHORITY.test(target);
    const entry: RecordedProxyRequest = {
      method: "CONNECT",
      target,
      allowed,
      status: allowed ? 0 : 403,
    };
    this.#observer.onRequest(entry);
    this.#track(client);
    client.on("error", () => client.destroy());
    if (!allowed) {
      refuse(client, 403, "Forbidden", "the test proxy only tunnels *.vault.azure.net:443\n");
      return;
    }
    // Never the requested host: the emulator's TLS server is the only upstream there is.
    const upstream: Socket = connect(this.#upstreamPort, "127.0.0.1");
    this.#track(upstream);
    upstream.on("error", () => {
      if (entry.status === 0) {
        entry.status = 502;
        refuse(client, 502, "Bad Gateway", "the Key Vault emulator is not reachable\n");
      } else {
        client.destroy();
      }
      upstream.destroy();
    });
    upstream.once("connect", () => {
      if (client.destroyed) {
        upstream.destroy();
        return;
      }
      entry.status = 200;
      client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
      if (head.length > 0) upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    client.on("close", () => upstream.destroy());
    // A refused (502) client is already ending with its answer: let it flush.
    upstream.on("close", () => {
      if (entry.status === 200) client.destroy();
    });
  }

  #refuseRequest(request: IncomingMessage, response: ServerResponse): void {
    const entry: RecordedProxyRequest = {
      method: request.method ?? "",
      target: (request.url ?? "").slice(0, MAX_TARGET_CHARS),
      allowed: false,
      status: 403,
    };
    this.#observer.onRequest(entry);
    request.resume();
    response.writeHead(403, { "content-type": "text/plain", connection: "close" });
    response.end("the test proxy only tunnels CONNECT *.vault.azure.net:443\n");
  }

  #track(socket: Duplex): void {
    this.#sockets.add(socket);
    socket.once("close", () => this.#sockets.delete(socket));
  }
}

function refuse(socket: Duplex, status: number, reason: string, body: string): void {
  if (socket.destroyed) return;
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
}
