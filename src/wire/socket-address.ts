import { join, resolve } from "node:path";
import { ConfigError } from "../errors.js";

/** The file name of the daemon's socket inside its run directory. */
export const SOCKET_FILE_NAME = "kms.sock";

/** Where the daemon listens, and its clients dial, unless a socket is given. */
export function defaultSocketPath(runDir: string): string {
  return join(runDir, SOCKET_FILE_NAME);
}

/**
 * Accepts what operators write: a path or `unix:///path` (the EncryptionConfiguration form),
 * and returns the absolute socket path. Abstract sockets (`@name`) are refused for the daemon:
 * they have no file, so nothing carries the 0600 permission that keeps other users out.
 */
export function parseSocketPath(value: string): string {
  let rest = value.trim();
  if (rest === "") {
    throw new ConfigError(
      "--socket",
      "is empty",
      "give a path such as /var/run/kmsplugin/kms-envelope.sock",
    );
  }
  if (rest.includes("://")) {
    if (!rest.startsWith("unix://")) {
      throw new ConfigError(
        "--socket",
        `only unix:// endpoints are supported, not ${JSON.stringify(value)}`,
        "give a socket path or unix:///path/to/socket",
      );
    }
    rest = rest.slice("unix://".length);
    if (rest === "") {
      throw new ConfigError(
        "--socket",
        `${JSON.stringify(value)} has no path`,
        "write unix:///path/to/socket",
      );
    }
  }
  if (rest.startsWith("@") || rest.startsWith("/@")) {
    throw new ConfigError(
      "--socket",
      `abstract sockets such as ${JSON.stringify(value)} are not supported`,
      "give a socket file path",
    );
  }
  return resolve(rest);
}

/**
 * The address grpc-js binds or dials for a socket path; a leading NUL marks a Linux abstract
 * socket (the form kms endpoints `unix:///@name` resolve to).
 */
export function grpcAddress(socketPath: string): string {
  return socketPath.startsWith("\0")
    ? `unix-abstract:${socketPath.slice(1)}`
    : `unix:${socketPath}`;
}
