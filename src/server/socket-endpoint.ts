import { resolve } from "node:path";
import { KmsEnvelopeError } from "../errors.js";

/** Where the daemon listens: a socket file, or a Linux abstract socket (no file, no mode). */
export type SocketEndpoint = { kind: "path"; path: string } | { kind: "abstract"; name: string };

/**
 * Accepts what operators write: a path, `unix:///path` (the EncryptionConfiguration form), or
 * `@name` / `unix:///@name` for an abstract socket, as kube-apiserver's ParseEndpoint does.
 */
export function parseSocketEndpoint(value: string): SocketEndpoint {
  let rest = value.trim();
  if (rest === "")
    throw new KmsEnvelopeError(
      "INVALID_CONFIG",
      "--socket is empty: give a path such as /var/run/kmsplugin/kms-envelope.sock",
    );
  if (rest.includes("://")) {
    if (!rest.startsWith("unix://")) {
      throw new KmsEnvelopeError(
        "INVALID_CONFIG",
        `--socket ${JSON.stringify(value)}: only unix:// endpoints are supported`,
      );
    }
    rest = rest.slice("unix://".length);
    if (rest.startsWith("/@")) rest = rest.slice(1);
  }
  if (rest.startsWith("@")) {
    if (rest.length === 1)
      throw new KmsEnvelopeError("INVALID_CONFIG", "--socket @: the abstract socket name is empty");
    return { kind: "abstract", name: rest.slice(1) };
  }
  return { kind: "path", path: resolve(rest) };
}

/** The address grpc-js binds or dials for an endpoint. */
export function grpcAddress(endpoint: SocketEndpoint): string {
  return endpoint.kind === "path" ? `unix:${endpoint.path}` : `unix-abstract:${endpoint.name}`;
}

/** Human-readable form for logs and errors. */
export function describeEndpoint(endpoint: SocketEndpoint): string {
  return endpoint.kind === "path" ? endpoint.path : `@${endpoint.name}`;
}
