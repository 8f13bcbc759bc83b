/**
 * The one way the test suites and the benchmarks run `kms-envelope serve` as a child process.
 * It imports nothing from node:test, so benchmark scripts can use it without starting a runner.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { errorMessage } from "../../src/errors.js";
import { PACKAGE_ROOT } from "../../src/package-info.js";
import { callUnary } from "../../src/wire/call-unary.js";
import { services } from "../../src/wire/protos.js";

/** How the CLI is started: a program and the arguments that come before the command's. */
export type CliCommand = readonly [program: string, ...prefix: string[]];

/** The CLI from this checkout's sources, run by tsx. */
export const SOURCE_CLI: CliCommand = [
  process.execPath,
  "--import",
  "tsx",
  join(PACKAGE_ROOT, "src/cli/main.ts"),
];

/** The environment without the caller's own KMS_ENVELOPE_* or master-key variables. */
export function cleanEnvironment(): NodeJS.ProcessEnv {
  return Object.fromEntries(
    Object.entries(process.env).filter(
      ([name]) => !name.startsWith("KMS_ENVELOPE_") && !name.startsWith("ENCRYPTION_MASTER_KEY"),
    ),
  );
}

/** What to start and how to tell it is ready. */
export interface LaunchOptions {
  readonly socketPath: string;
  /** Added to the clean environment (a master key, a provider's settings). */
  readonly env: NodeJS.ProcessEnv;
  /** Flags after `serve --socket … --http-address … --log-level …`. */
  readonly args?: readonly string[];
  /** The CLI to run (default: the sources). */
  readonly command?: CliCommand;
  /** `--http-address` (default an ephemeral loopback port). */
  readonly httpAddress?: string;
  /** `--log-level` (default debug, which tests read; benchmarks keep the log quiet). */
  readonly logLevel?: string;
  readonly startTimeoutMs?: number;
  /** Called with the child as soon as it exists, e.g. to kill it when a test file ends. */
  readonly onSpawn?: (child: ChildProcess) => void;
}

/** A daemon started by `launch`, its output collected line by line. */
export class LaunchedDaemon {
  readonly socketPath: string;
  readonly child: ChildProcess;
  readonly lines: string[] = [];
  /** The probe address and primary key id from the "serving" log line (when logged). */
  httpAddress = "";
  keyId = "";
  #stdoutBytes = 0;
  readonly #exited: Promise<number | null>;

  constructor(socketPath: string, child: ChildProcess) {
    this.socketPath = socketPath;
    this.child = child;
    this.#exited = new Promise((resolve) => child.on("exit", (code) => resolve(code)));
    child.stdout?.on("data", (chunk: Buffer) => {
      this.#stdoutBytes += chunk.length;
    });
    for (const stream of [child.stdout, child.stderr]) {
      let pending = "";
      stream?.on("data", (chunk: Buffer) => {
        pending += chunk.toString();
        const parts = pending.split("\n");
        pending = parts.pop() ?? "";
        this.lines.push(...parts.filter((line) => line !== ""));
      });
    }
  }

  /** Bytes the daemon has written to stdout, where its log goes. */
  get stdoutBytes(): number {
    return this.#stdoutBytes;
  }

  /** Process id of the daemon itself. */
  get pid(): number {
    if (this.child.pid === undefined) throw new Error("daemon has no pid");
    return this.child.pid;
  }

  /** Sends a signal (SIGTERM by default) and waits for the exit code; SIGKILL after the timeout. */
  async stop(signal: NodeJS.Signals = "SIGTERM", timeoutMs = 30_000): Promise<number | null> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    const timer = setTimeout(() => this.child.kill("SIGKILL"), timeoutMs);
    try {
      return await this.#exited;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Resolves with the exit code once the process has ended. */
  exited(): Promise<number | null> {
    return this.#exited;
  }

  /** Every log line parsed as JSON (non-JSON lines are kept as { raw }). */
  logRecords(): Record<string, unknown>[] {
    return this.lines.map((line) => {
      try {
        return JSON.parse(line) as Record<string, unknown>;
      } catch {
        return { raw: line };
      }
    });
  }

  /** Waits for the "serving" line, or, when the log level hides it, for Status to say ok. */
  async waitReady(timeoutMs: number, logsServing: boolean): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let lastError = "";
    while (Date.now() < deadline) {
      if (this.child.exitCode !== null || this.child.signalCode !== null) {
        lastError = `exited (${this.child.exitCode ?? this.child.signalCode})`;
        break;
      }
      if (logsServing) {
        const line = this.lines.find((entry) => entry.includes('"msg":"kms-envelope serving"'));
        if (line !== undefined) {
          const parsed = JSON.parse(line) as { http: string; keyId: string };
          this.httpAddress = parsed.http;
          this.keyId = parsed.keyId;
          return;
        }
      } else {
        const answer = await statusOf(this.socketPath);
        if (answer === "ok") return;
        lastError = answer;
      }
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    this.child.kill("SIGKILL");
    throw new Error(`daemon did not start (${lastError}):\n${this.lines.join("\n")}`);
  }
}

/** The KMS v2 Status healthz, or why it could not be had. */
async function statusOf(socketPath: string): Promise<string> {
  const client = new services.kmsV2(`unix:${socketPath}`, grpc.credentials.createInsecure());
  try {
    const answer = await callUnary<{ healthz: string }>(
      client,
      "Status",
      {},
      { deadline: Date.now() + 1000 },
    );
    return answer.healthz;
  } catch (error) {
    return errorMessage(error);
  } finally {
    client.close();
  }
}

/** Starts `kms-envelope serve` and waits until it serves. */
export async function launchDaemon(options: LaunchOptions): Promise<LaunchedDaemon> {
  const [program, ...prefix] = options.command ?? SOURCE_CLI;
  const logLevel = options.logLevel ?? "debug";
  const child = spawn(
    program,
    [
      ...prefix,
      "serve",
      "--socket",
      options.socketPath,
      "--http-address",
      options.httpAddress ?? "127.0.0.1:0",
      "--log-level",
      logLevel,
      ...(options.args ?? []),
    ],
    { env: { ...cleanEnvironment(), ...options.env }, stdio: ["ignore", "pipe", "pipe"] },
  );
  options.onSpawn?.(child);
  const daemon = new LaunchedDaemon(options.socketPath, child);
  await daemon.waitReady(
    options.startTimeoutMs ?? 20_000,
    logLevel === "debug" || logLevel === "info",
  );
  return daemon;
}
