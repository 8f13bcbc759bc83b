import { constants } from "node:fs";
import { access, chmod, chown, lstat, mkdir, unlink } from "node:fs/promises";
import { connect } from "node:net";
import { dirname } from "node:path";
import { ConfigError, KmsEnvelopeError } from "../errors.js";

// How long to wait for an existing socket to answer before calling it stale.
const PROBE_TIMEOUT_MS = 1000;

function errorCode(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | undefined)?.code;
}

/**
 * Resolves true when some process accepts connections on the socket file. Only a refused
 * connection proves the socket stale: any other failure (EACCES on another user's socket, a
 * timeout) counts as live, so a socket that might be in use is never deleted.
 */
function socketIsLive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ path });
    const done = (live: boolean): void => {
      socket.destroy();
      resolve(live);
    };
    socket.setTimeout(PROBE_TIMEOUT_MS, () => done(true));
    socket.once("connect", () => done(true));
    socket.once("error", (error) => done(errorCode(error) !== "ECONNREFUSED"));
  });
}

/** What preparing the socket path found there. */
type SocketPathState = "free" | "stale-socket-removed";

/** Creates the socket's directory (0700) when missing, and refuses one that cannot hold it. */
async function prepareDirectory(path: string): Promise<void> {
  const directory = dirname(path);
  try {
    await mkdir(directory, { recursive: true, mode: 0o700 });
    await access(directory, constants.W_OK | constants.X_OK);
  } catch (error) {
    const code = errorCode(error);
    const problem =
      code === "ENOTDIR" || code === "EEXIST"
        ? "is not a directory, or lies under a file"
        : code === "EACCES" || code === "EPERM" || code === "EROFS"
          ? "cannot be written by this user"
          : `cannot be created: ${code ?? "unknown error"}`;
    throw new ConfigError(
      "--socket",
      `the directory ${directory} of ${path} ${problem}`,
      "choose another --socket or fix the directory",
      { cause: error },
    );
  }
}

/**
 * Makes `path` ready to bind (SPEC.md §4): a missing parent directory is created (0700); a
 * stale socket left by a crash is removed (and reported, so the takeover is logged); a socket
 * another process still serves is refused; anything that is not a socket is refused and left
 * untouched.
 */
export async function prepareSocketFile(path: string): Promise<SocketPathState> {
  await prepareDirectory(path);
  let stats: Awaited<ReturnType<typeof lstat>>;
  try {
    stats = await lstat(path);
  } catch (error) {
    if (errorCode(error) === "ENOENT") return "free";
    throw error;
  }
  if (!stats.isSocket()) {
    const kind = stats.isDirectory()
      ? "a directory"
      : stats.isSymbolicLink()
        ? "a symbolic link"
        : "a regular file or other non-socket";
    throw new KmsEnvelopeError(
      "SOCKET_PATH_NOT_SOCKET",
      `${path} exists and is ${kind}: refusing to replace it; choose another --socket or remove it yourself`,
    );
  }
  if (await socketIsLive(path)) {
    throw new KmsEnvelopeError(
      "SOCKET_IN_USE",
      `${path} is served by another running process (or cannot be probed): stop it first or choose another --socket`,
    );
  }
  await unlink(path);
  return "stale-socket-removed";
}

/** Applies the configured mode and owner to a freshly bound socket file. */
export async function secureSocketFile(
  path: string,
  mode: number,
  owner: { uid: number; gid: number } | undefined,
): Promise<void> {
  if (owner !== undefined) await chown(path, owner.uid, owner.gid);
  await chmod(path, mode);
}

/** Identity of a socket file: inode numbers are reused at once, so device and ctime count too. */
type SocketIdentity = string;

/** Identity of the file at `path` now, or undefined when there is none. */
export async function socketIdentity(path: string): Promise<SocketIdentity | undefined> {
  try {
    const stats = await lstat(path, { bigint: true });
    return `${stats.dev}:${stats.ino}:${stats.ctimeNs}`;
  } catch {
    return undefined;
  }
}

/** Removes the socket file if it is still the one this process bound (same identity). */
export async function removeSocketFile(
  path: string,
  identity: SocketIdentity | undefined,
): Promise<void> {
  if (identity === undefined || (await socketIdentity(path)) !== identity) return;
  try {
    await unlink(path);
  } catch (error) {
    if (errorCode(error) !== "ENOENT") throw error;
  }
}
