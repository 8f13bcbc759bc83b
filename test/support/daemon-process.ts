import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { PACKAGE_ROOT } from "../../src/package-info.js";
import { callUnary } from "../../src/wire/call-unary.js";
import { services } from "../../src/wire/protos.js";

/** How a test starts the CLI: a program and the arguments that come before the command's. */
export type CliCommand = readonly [program: string, ...prefix: string[]];

/** The CLI from this checkout's sources, run by tsx. */
export const SOURCE_CLI: CliCommand = [
  process.execPath,
  "--import",
  "tsx",
  join(PACKAGE_ROOT, "src/cli/main.ts"),
];

/** A fresh random master key, base64, for ENCRYPTION_MASTER_KEY. */
export function newMasterKey(): string {
  return randomBytes(32).toString("base64");
}

/** A temporary directory removed by the returned cleanup. */
export async function temporaryDirectory(): Promise<{ path: string; remove: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), "kms-envelope-it-"));
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}

/** Result of a CLI run that was expected to end by itself. */
export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

// A failed assertion can skip a test's stop(); a daemon left running would keep the test file
// alive forever, so whatever is still running when the file's tests end is killed.
const liveDaemons = new Set<ChildProcess>();
after(() => {
  for (const child of liveDaemons) child.kill("SIGKILL");
});

/** A CLI process started from source, whose output is collected as it runs. */
export interface CliProcess {
  readonly child: ChildProcess;
  readonly stdout: () => string;
  readonly stderr: () => string;
  /** The exit code (null when a signal ended it). */
  readonly exited: Promise<number | null>;
}

/** Starts the CLI (from source unless `command` says otherwise) without waiting for it. */
export function startCli(
  args: string[],
  env: NodeJS.ProcessEnv = {},
  input?: string | Uint8Array,
  command: CliCommand = SOURCE_CLI,
): CliProcess {
  const [program, ...prefix] = command;
  const child = spawn(program, [...prefix, ...args], {
    env: { ...cleanEnvironment(), ...env },
    stdio: [input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
  });
  liveDaemons.add(child);
  child.stdin?.end(input);
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) =>
    child.on("exit", (code) => {
      liveDaemons.delete(child);
      resolve(code);
    }),
  );
  return { child, stdout: () => stdout, stderr: () => stderr, exited };
}

/** Runs the CLI to completion, with `input` on its stdin when given. */
export async function runCli(
  args: string[],
  env: NodeJS.ProcessEnv = {},
  timeoutMs = 20_000,
  input?: string | Uint8Array,
  command: CliCommand = SOURCE_CLI,
): Promise<CliResult> {
  const cli = startCli(args, env, input, command);
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      cli.child.kill("SIGKILL");
      reject(
        new Error(
          `CLI ${args.join(" ")} did not finish in ${timeoutMs} ms; stdout=${cli.stdout()} stderr=${cli.stderr()}`,
        ),
      );
    }, timeoutMs);
  });
  try {
    const code = await Promise.race([cli.exited, timedOut]);
    return { code, stdout: cli.stdout(), stderr: cli.stderr() };
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Runs the CLI like `kms-envelope … | head -1`: its stdout is closed as soon as the first line
 * has arrived, so the writes after it meet a closed pipe (EPIPE).
 */
export async function runCliReadingOneLine(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<CliResult> {
  const cli = startCli(args, env);
  cli.child.stdout?.on("data", () => {
    if (cli.stdout().includes("\n")) cli.child.stdout?.destroy();
  });
  const code = await cli.exited;
  return { code, stdout: cli.stdout(), stderr: cli.stderr() };
}

/**
 * The test runner's environment without its KMS_ENVELOPE_* or key variables, which must not
 * leak into the processes a test starts.
 */
export function cleanEnvironment(): NodeJS.ProcessEnv {
  return Object.fromEntries(
    Object.entries(process.env).filter(
      ([name]) => !name.startsWith("KMS_ENVELOPE_") && !name.startsWith("ENCRYPTION_MASTER_KEY"),
    ),
  );
}

/** gRPC clients of every service the daemon serves, on one channel each. */
export interface DaemonClients {
  kmsV2: grpc.Client;
  kmsV1: grpc.Client;
  field: grpc.Client;
  health: grpc.Client;
  close(): void;
}

/** Dials every service on a socket path. */
export function dial(socketPath: string): DaemonClients {
  const address = `unix:${socketPath}`;
  const credentials = grpc.credentials.createInsecure();
  // kube-apiserver sets :authority to localhost on its v2 connection (KMS-CONTRACT.md §1.3).
  const options = {
    "grpc.default_authority": "localhost",
    "grpc.max_receive_message_length": 64 * 1024 * 1024,
    "grpc.max_send_message_length": 64 * 1024 * 1024,
  };
  const clients = {
    kmsV2: new services.kmsV2(address, credentials, options),
    kmsV1: new services.kmsV1(address, credentials, options),
    field: new services.field(address, credentials, options),
    health: new services.health(address, credentials, options),
  };
  return {
    ...clients,
    close: () => {
      for (const client of Object.values(clients)) client.close();
    },
  };
}

/** A daemon started as a real child process on a temporary socket. */
export class DaemonProcess {
  readonly socketPath: string;
  readonly child: ChildProcess;
  readonly lines: string[] = [];
  httpAddress = "";
  keyId = "";
  #exited: Promise<number | null>;

  private constructor(socketPath: string, child: ChildProcess) {
    this.socketPath = socketPath;
    this.child = child;
    this.#exited = new Promise((resolve) =>
      child.on("exit", (code) => {
        liveDaemons.delete(child);
        resolve(code);
      }),
    );
    liveDaemons.add(child);
    for (const stream of [child.stdout, child.stderr]) {
      let pending = "";
      stream?.on("data", (chunk: Buffer) => {
        pending += chunk.toString();
        const parts = pending.split("\n");
        pending = parts.pop() ?? "";
        this.lines.push(...parts);
      });
    }
  }

  /** Starts `kms-envelope serve` and waits for its "serving" log line. */
  static async start(options: {
    socketPath: string;
    env: NodeJS.ProcessEnv;
    args?: string[];
    command?: CliCommand;
  }): Promise<DaemonProcess> {
    const [program, ...prefix] = options.command ?? SOURCE_CLI;
    const child = spawn(
      program,
      [
        ...prefix,
        "serve",
        "--socket",
        options.socketPath,
        "--http-address",
        "127.0.0.1:0",
        "--log-level",
        "debug",
        ...(options.args ?? []),
      ],
      { env: { ...cleanEnvironment(), ...options.env }, stdio: ["ignore", "pipe", "pipe"] },
    );
    const daemon = new DaemonProcess(options.socketPath, child);
    await daemon.#waitServing();
    return daemon;
  }

  async #waitServing(): Promise<void> {
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      const line = this.lines.find((entry) => entry.includes('"msg":"kms-envelope serving"'));
      if (line !== undefined) {
        const parsed = JSON.parse(line) as { http: string; keyId: string };
        this.httpAddress = parsed.http;
        this.keyId = parsed.keyId;
        return;
      }
      if (this.child.exitCode !== null) break;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    this.child.kill("SIGKILL");
    throw new Error(`daemon did not start:\n${this.lines.join("\n")}`);
  }

  /** Sends a signal and waits for the exit code. */
  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<number | null> {
    if (this.child.exitCode === null) this.child.kill(signal);
    return this.#exited;
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
}

/** Calls a unary method with a 10 s deadline. */
export function call<Response>(
  client: grpc.Client,
  method: string,
  request: object,
): Promise<Response> {
  return callUnary<Response>(client, method, request, { deadline: Date.now() + 10_000 });
}

/** Calls a method and returns the gRPC error it fails with (fails the test if it succeeds). */
export async function callError(
  client: grpc.Client,
  method: string,
  request: object,
): Promise<grpc.ServiceError> {
  try {
    await call(client, method, request);
  } catch (error) {
    return error as grpc.ServiceError;
  }
  throw new Error(`${method} succeeded but was expected to fail`);
}

/** Sends raw bytes as the request message, bypassing protobuf encoding; expects a failure. */
export function callRawError(
  client: grpc.Client,
  path: string,
  body: Buffer,
): Promise<grpc.ServiceError> {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(
      path,
      (bytes: Buffer) => bytes,
      (bytes: Buffer) => bytes,
      body,
      { deadline: Date.now() + 10_000 },
      (error) => (error ? resolve(error) : reject(new Error(`${path} accepted the raw request`))),
    );
  });
}

/** The daemon and clients of a test suite, set once its `before` hook has run. */
export interface SuiteDaemon {
  daemon: DaemonProcess;
  clients: DaemonClients;
}

/**
 * Starts one daemon for the enclosing describe() on a temporary socket (a fresh master key
 * unless `env` says otherwise) and stops it, with its clients and directory, afterwards.
 */
export function suiteDaemon(
  options: { env?: NodeJS.ProcessEnv; args?: string[] } = {},
): SuiteDaemon {
  const suite = {} as SuiteDaemon;
  let directory: Awaited<ReturnType<typeof temporaryDirectory>> | undefined;
  before(async () => {
    directory = await temporaryDirectory();
    suite.daemon = await DaemonProcess.start({
      socketPath: join(directory.path, "kms.sock"),
      env: options.env ?? { ENCRYPTION_MASTER_KEY: newMasterKey() },
      args: options.args ?? [],
    });
    suite.clients = dial(suite.daemon.socketPath);
  });
  after(async () => {
    suite.clients?.close();
    await suite.daemon?.stop();
    await directory?.remove();
  });
  return suite;
}
