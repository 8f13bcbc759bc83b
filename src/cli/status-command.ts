import { Command, Option } from "commander";
import { durationSchema } from "../config/duration.js";
import { parseFlag } from "../config/issues.js";
import { socketPathSchema } from "../config/schemas.js";
import { KmsEnvelopeError } from "../errors.js";
import type { StatusResponse__Output } from "../wire/generated/v2/StatusResponse.js";
import { services } from "../wire/protos.js";
import { defaultSocketPath, grpcAddress, SOCKET_FILE_NAME } from "../wire/socket-address.js";
import { UnaryConnection } from "../wire/unary-connection.js";
import { defaultRunDirectory } from "./serve-config.js";

async function askStatus(socketPath: string, timeoutMs: number): Promise<StatusResponse__Output> {
  const address = grpcAddress(socketPath);
  const connection = new UnaryConnection(services.kmsV2, { address, timeoutMs, label: address });
  try {
    const answer = await connection.attempt<StatusResponse__Output>("Status", {});
    if (answer.ok) return answer.value;
    throw new KmsEnvelopeError(
      "DAEMON_UNREACHABLE",
      `no answer from ${address}: ${answer.details}; is the daemon running?`,
    );
  } finally {
    connection.close();
  }
}

/** `kms-envelope status`: asks a running daemon for its KMS v2 Status. */
export function statusCommand(): Command {
  return new Command("status")
    .description(
      "ask a running daemon for its version, health and primary key id (exit 1 unless healthy)",
    )
    .addOption(
      new Option("--socket <path>", `daemon socket (default <run-dir>/${SOCKET_FILE_NAME})`).env(
        "KMS_ENVELOPE_SOCKET",
      ),
    )
    .addOption(
      new Option("--run-dir <dir>", "run directory of the daemon").env("KMS_ENVELOPE_RUN_DIR"),
    )
    .option("--timeout <duration>", "how long to wait for the answer", "5s")
    .option("--json", "print the answer as JSON")
    .action(
      async (options: { socket?: string; runDir?: string; timeout: string; json?: boolean }) => {
        const timeoutMs = parseFlag(durationSchema, "timeout", options.timeout);
        const socket = options.socket ?? defaultSocketPath(options.runDir ?? defaultRunDirectory());
        const answer = await askStatus(parseFlag(socketPathSchema, "socket", socket), timeoutMs);
        if (options.json) {
          process.stdout.write(
            `${JSON.stringify({ version: answer.version, healthz: answer.healthz, keyId: answer.key_id })}\n`,
          );
        } else {
          process.stdout.write(
            `version: ${answer.version}\nhealthz: ${answer.healthz}\nkey_id:  ${answer.key_id}\n`,
          );
        }
        if (answer.healthz !== "ok") process.exitCode = 1;
      },
    );
}
