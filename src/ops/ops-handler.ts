import type { IncomingMessage, ServerResponse } from "node:http";
import type { Registry } from "prom-client";
import type { ProbeResult } from "./probes.js";

/** What an ops endpoint answers: probes by path, and a registry's text at /metrics. */
interface OpsRoutes {
  /** Probe paths (`/healthz` …) and the check each runs; 200 when it passes, else 503. */
  readonly probes: Readonly<Record<string, () => ProbeResult>>;
  /** Rendered at /metrics in the Prometheus text format. */
  readonly registry: Registry;
  /** Told why rendering the metrics failed; the answer is then a bare 500. */
  readonly onMetricsError: (error: unknown) => void;
}

/**
 * The one request handler behind both the daemon's probe port and the library's
 * engineOpsHandler, so the two answer alike: GET or HEAD only, probe verdicts as one plain
 * text line, metrics with the registry's content type.
 */
export function opsRequestHandler(
  routes: OpsRoutes,
): (request: IncomingMessage, response: ServerResponse) => void {
  const paths = [...Object.keys(routes.probes), "/metrics"];
  return (request, response) => {
    const path = (request.url ?? "/").split("?")[0] ?? "/";
    if (request.method !== "GET" && request.method !== "HEAD") {
      response
        .writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain" })
        .end("method not allowed\n");
      return;
    }
    const probe = Object.hasOwn(routes.probes, path) ? routes.probes[path] : undefined;
    if (probe !== undefined) {
      const result = probe();
      response
        .writeHead(result.ok ? 200 : 503, { "content-type": "text/plain; charset=utf-8" })
        .end(`${result.reason}\n`);
      return;
    }
    if (path === "/metrics") {
      routes.registry.metrics().then(
        (text) =>
          response.writeHead(200, { "content-type": routes.registry.contentType }).end(text),
        (error: unknown) => {
          routes.onMetricsError(error);
          response.writeHead(500).end();
        },
      );
      return;
    }
    response
      .writeHead(404, { "content-type": "text/plain" })
      .end(`not found: try ${paths.slice(0, -1).join(", ")} or ${paths.at(-1)}\n`);
  };
}
