import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { ConfigError } from "../errors.js";
import type { Logger } from "./logger.js";
import type { DaemonMetrics } from "./metrics.js";
import { opsRequestHandler } from "./ops-handler.js";
import {
  checkHealthz,
  checkLivez,
  checkReadyz,
  type ProbeResult,
  type ProbeSources,
} from "./probes.js";

/** A running loopback HTTP server for probes and metrics. */
export interface OpsServer {
  /** "host:port" actually bound (port 0 resolves here). */
  readonly address: string;
  close(): Promise<void>;
}

const PROBES: Record<string, (sources: ProbeSources) => ProbeResult> = {
  "/healthz": checkHealthz,
  "/livez": checkLivez,
  "/readyz": checkReadyz,
};

/** An operator's mistake (a port in use or not allowed) says which flag to change. */
function bindFailure(address: { host: string; port: number }, error: NodeJS.ErrnoException): Error {
  const problems: Record<string, string> = {
    EADDRINUSE: "is already in use by another process",
    EACCES: "needs privileges this user does not have",
    EADDRNOTAVAIL: "is not an address of this machine",
  };
  const problem = problems[error.code ?? ""];
  if (problem === undefined) return error;
  return new ConfigError(
    "--http-address",
    `${address.host}:${address.port} ${problem}`,
    'choose a free loopback port, or "off" to disable the probes',
    { cause: error },
  );
}

/** Serves /healthz, /livez, /readyz and /metrics on `host:port`. */
export async function startOpsServer(options: {
  host: string;
  port: number;
  sources: ProbeSources;
  metrics: DaemonMetrics;
  logger: Logger;
}): Promise<OpsServer> {
  const { sources, metrics, logger } = options;
  const probes = Object.fromEntries(
    Object.entries(PROBES).map(([path, check]) => [path, () => check(sources)]),
  );
  const server: Server = createServer(
    opsRequestHandler({
      probes,
      registry: metrics.registry,
      onMetricsError: (error) => logger.error({ err: error }, "rendering metrics failed"),
    }),
  );
  await new Promise<void>((resolve, reject) => {
    server.once("error", (error: NodeJS.ErrnoException) => reject(bindFailure(options, error)));
    server.listen(options.port, options.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const bound = server.address() as AddressInfo;
  const address = `${bound.family === "IPv6" ? `[${bound.address}]` : bound.address}:${bound.port}`;
  return {
    address,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
