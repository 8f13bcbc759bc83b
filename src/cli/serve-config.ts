import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { z } from "zod";
import { byteSizeSchema } from "../config/byte-size.js";
import { durationSchema } from "../config/duration.js";
import { flagIssuesError, parseFlag } from "../config/issues.js";
import { socketPathSchema } from "../config/schemas.js";
import { LOG_LEVELS } from "../ops/logger.js";
import type { DaemonOptions } from "../server/daemon-options.js";
import { defaultSocketPath } from "../wire/socket-address.js";

/** Where the socket and the development key live unless --run-dir says otherwise. */
export function defaultRunDirectory(): string {
  if (process.getuid?.() === 0) return "/var/run/kms-envelope";
  const runtime = process.env.XDG_RUNTIME_DIR;
  return runtime
    ? join(runtime, "kms-envelope")
    : join(tmpdir(), `kms-envelope-${process.getuid?.() ?? "user"}`);
}

/**
 * The daemon socket the flags name: `--socket`, else `<run-dir>/kms.sock`. A refused path is
 * blamed on the flag that gave it, so a long `--run-dir` is not reported as `--socket`.
 */
export function socketFromFlags(flags: { socket?: string; runDir?: string }): string {
  if (flags.socket !== undefined) return parseFlag(socketPathSchema, "socket", flags.socket);
  const runDir = flags.runDir ?? defaultRunDirectory();
  const flag = flags.runDir === undefined ? "socket" : "run-dir";
  return parseFlag(socketPathSchema, flag, defaultSocketPath(runDir));
}

const hostPort = z
  .string()
  .trim()
  .transform((text, context) => {
    if (text === "off" || text === "") return undefined;
    const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text);
    const port = Number(match?.[3]);
    if (match === null || port > 65535) {
      context.addIssue({
        code: "custom",
        message: 'must be HOST:PORT (for example 127.0.0.1:8089) or "off"',
      });
      return z.NEVER;
    }
    const host = (match[1] ?? match[2]) as string;
    // Probes and metrics are unauthenticated: SPEC.md §6 keeps them on loopback.
    if (!isLoopback(host)) {
      context.addIssue({
        code: "custom",
        message: `must be a loopback address (127.0.0.1, [::1] or localhost), not ${host}`,
      });
      return z.NEVER;
    }
    return { host, port };
  });

function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

const owner = z
  .string()
  .trim()
  .regex(/^\d+(?::\d+)?$/, "must be UID or UID:GID (numbers)")
  .transform((text) => {
    const [uid, gid] = text.split(":").map(Number) as [number, number | undefined];
    return { uid, gid: gid ?? uid };
  });

const count = z.string().trim().regex(/^\d+$/, "must be a whole number").transform(Number);

const serveOptions = z.object({
  socket: z.string().optional(),
  runDir: z.string().trim().min(1).optional(),
  workspace: z.string().min(1, "must not be empty").max(1024),
  dev: z.boolean().default(false),
  httpAddress: hostPort,
  socketMode: z
    .string()
    .trim()
    .regex(/^0?[0-7]{3}$/, "must be an octal mode such as 0600 or 0660")
    .transform((text) => Number.parseInt(text, 8)),
  socketOwner: owner.optional(),
  logLevel: z.enum(LOG_LEVELS),
  shutdownTimeout: durationSchema,
  // Floors keep a typo from turning health checks into a busy loop of provider calls.
  healthInterval: durationSchema.pipe(z.number().min(100, "must be at least 100ms")),
  healthTimeout: durationSchema.pipe(z.number().min(100, "must be at least 100ms")),
  gracePeriod: durationSchema,
  keyring: z.string().trim().min(1).optional(),
  keyringPollInterval: durationSchema.pipe(z.number().min(100, "must be at least 100ms")),
  maxRequestBytes: byteSizeSchema.pipe(
    z
      .number()
      .min(1024, "must be at least 1KiB")
      .max(64 * 1024 * 1024, "must be at most 64MiB"),
  ),
  maxConnectionBufferBytes: byteSizeSchema.pipe(z.number().min(1024, "must be at least 1KiB")),
  maxBufferBytes: byteSizeSchema.pipe(z.number().min(1024, "must be at least 1KiB")),
  maxStreamsPerConnection: count.pipe(z.number().min(1).max(65535)),
  maxConnections: count.pipe(z.number().min(1)),
  callTimeout: durationSchema.pipe(z.number().min(100, "must be at least 100ms")),
  idleTimeout: durationSchema.pipe(z.number().min(1000, "must be at least 1s")),
  fieldWorkers: count.pipe(z.number().min(1).max(256)),
  maxFieldsPerRequest: count.pipe(z.number().min(1)),
  maxFieldsPerRecord: count.pipe(z.number().min(1)),
});

/** Raw option values as the command line (or environment) gave them. */
export type ServeOptionsInput = z.input<typeof serveOptions>;

/** The serve command's configuration, validated once and frozen: the daemon's options and the CLI's own. */
interface ServeConfig extends DaemonOptions {
  readonly runDir: string;
  readonly dev: boolean;
  readonly logLevel: (typeof LOG_LEVELS)[number];
  /** Keyring file; without it the local provider's environment keys are used. */
  readonly keyring: string | undefined;
  readonly keyringPollMs: number;
}

/** Validates serve options; the error names each bad flag and what it expects. */
export function parseServeConfig(input: ServeOptionsInput): ServeConfig {
  const parsed = serveOptions.safeParse(input);
  if (!parsed.success) throw flagIssuesError(parsed.error.issues);
  const options = parsed.data;
  const runDir = options.runDir ?? defaultRunDirectory();
  const socket = socketFromFlags(options);
  return Object.freeze({
    socket,
    runDir,
    workspace: options.workspace,
    dev: options.dev,
    http: options.httpAddress,
    socketMode: options.socketMode,
    socketOwner: options.socketOwner,
    logLevel: options.logLevel,
    shutdownTimeoutMs: options.shutdownTimeout,
    healthIntervalMs: options.healthInterval,
    healthTimeoutMs: options.healthTimeout,
    gracePeriodMs: options.gracePeriod,
    limits: Object.freeze({
      maxRequestBytes: options.maxRequestBytes,
      maxConnectionBufferBytes: options.maxConnectionBufferBytes,
      maxBufferBytes: options.maxBufferBytes,
      maxStreamsPerConnection: options.maxStreamsPerConnection,
      maxConnections: options.maxConnections,
      callTimeoutMs: options.callTimeout,
      idleTimeoutMs: options.idleTimeout,
    }),
    fieldWorkers: options.fieldWorkers,
    maxFieldsPerRequest: options.maxFieldsPerRequest,
    maxFieldsPerRecord: options.maxFieldsPerRecord,
    keyring: options.keyring === undefined ? undefined : resolve(options.keyring),
    keyringPollMs: options.keyringPollInterval,
  });
}
