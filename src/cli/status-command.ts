import { Command, Option } from "commander";
import { durationSchema } from "../config/duration.js";
import { parseFlag } from "../config/issues.js";
import { KmsEnvelopeError } from "../errors.js";
import type { VersionResponse__Output } from "../wire/generated/v1beta1/VersionResponse.js";
import type { StatusResponse__Output } from "../wire/generated/v2/StatusResponse.js";
import { services } from "../wire/protos.js";
import { grpcAddress, SOCKET_FILE_NAME } from "../wire/socket-address.js";
import { UnaryConnection } from "../wire/unary-connection.js";
import { socketFromFlags } from "./serve-config.js";

/** What `status` reports. */
interface DaemonStatus {
  /** The daemon's own version (its package's), null when it does not say. */
  readonly version: string | null;
  /** The program answering, `kms-envelope` for ours; null when it does not say. */
  readonly runtime: string | null;
  /** The KMS API version its Status names (`v2`), which kube-apiserver checks. */
  readonly apiVersion: string;
  readonly healthz: string;
  readonly keyId: string;
}

/**
 * Asks the daemon on `socketPath`. KMS v2's Status names only the API version, and its wire
 * format is kube-apiserver's, so the daemon's own version comes from the one existing answer
 * that carries it: v1beta1 Version's runtime_name and runtime_version, served on the same
 * socket. A plugin without v1beta1 still gets its Status reported, its version unknown.
 */
async function askStatus(socketPath: string, timeoutMs: number): Promise<DaemonStatus> {
  const address = grpcAddress(socketPath);
  const options = { address, timeoutMs, label: address };
  const v2 = new UnaryConnection(services.kmsV2, options);
  const v1 = new UnaryConnection(services.kmsV1, options);
  try {
    const [status, version] = await Promise.all([
      v2.attempt<StatusResponse__Output>("Status", {}),
      v1.attempt<VersionResponse__Output>("Version", { version: "v1beta1" }),
    ]);
    if (!status.ok)
      throw new KmsEnvelopeError(
        "DAEMON_UNREACHABLE",
        `no answer from ${address}: ${status.details}; is the daemon running? (start it, or point --socket at its socket)`,
      );
    const runtime = version.ok ? version.value : undefined;
    return {
      version: runtime?.runtime_version || null,
      runtime: runtime?.runtime_name || null,
      apiVersion: status.value.version,
      healthz: status.value.healthz,
      keyId: status.value.key_id,
    };
  } finally {
    v2.close();
    v1.close();
  }
}

/** The version line: ours is the bare version; another plugin's says whose it is. */
function versionText(status: DaemonStatus): string {
  if (status.version === null) return "unknown (the daemon does not answer v1beta1 Version)";
  return status.runtime === null || status.runtime === "kms-envelope"
    ? status.version
    : `${status.version} (${status.runtime})`;
}

/** `kms-envelope status`: asks a running daemon for its version and its KMS v2 Status. */
export function statusCommand(): Command {
  return new Command("status")
    .description(
      "ask a running daemon for its version, KMS API version, health and primary key id (exit 1 unless healthy)",
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
        const answer = await askStatus(socketFromFlags(options), timeoutMs);
        process.stdout.write(
          options.json
            ? `${JSON.stringify(answer)}\n`
            : // healthz and key_id keep the lines scripts already match (`grep 'healthz: ok'`).
              `version: ${versionText(answer)}\nkms_api: ${answer.apiVersion}\nhealthz: ${answer.healthz}\nkey_id:  ${answer.keyId}\n`,
        );
        if (answer.healthz !== "ok") {
          process.stderr.write(`kms-envelope: the daemon is not healthy: ${answer.healthz}\n`);
          process.exitCode = 1;
        }
      },
    );
}
