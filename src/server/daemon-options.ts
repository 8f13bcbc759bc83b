import type { ServerLimits } from "./grpc-server.js";

/**
 * What the daemon needs to run, whoever decided it: the CLI maps its flags onto this (as the
 * Go plugin's main wires pflags to parts), and nothing under server/ knows about flags.
 */
export interface DaemonOptions {
  /** Absolute path of the socket file. */
  readonly socket: string;
  /** Workspace whose key seals KMS ciphertexts. */
  readonly workspace: string;
  /** Loopback address of the probes and metrics, or undefined for none. */
  readonly http: { host: string; port: number } | undefined;
  readonly socketMode: number;
  readonly socketOwner: { uid: number; gid: number } | undefined;
  /** How long a stop request waits for calls in flight. */
  readonly shutdownTimeoutMs: number;
  readonly healthIntervalMs: number;
  readonly healthTimeoutMs: number;
  /** How long a failing custody provider is tolerated before crypto stops. */
  readonly gracePeriodMs: number;
  /** What one client may make the gRPC server hold, and for how long. */
  readonly limits: ServerLimits;
  /** Worker threads that seal and open field-service batches off the event loop. */
  readonly fieldWorkers: number;
  readonly maxFieldsPerRequest: number;
  readonly maxFieldsPerRecord: number;
}
