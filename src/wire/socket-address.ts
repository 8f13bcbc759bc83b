import { join } from "node:path";

/** The file name of the daemon's socket inside its run directory. */
export const SOCKET_FILE_NAME = "kms.sock";

/** Longest Unix socket path Linux accepts (sun_path is 108 bytes including the NUL). */
export const MAX_SOCKET_PATH_BYTES = 107;

/** Where the daemon listens, and its clients dial, unless a socket is given. */
export function defaultSocketPath(runDir: string): string {
  return join(runDir, SOCKET_FILE_NAME);
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
