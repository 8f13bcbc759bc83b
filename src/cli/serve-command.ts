import { availableParallelism } from "node:os";
import { Command, Option } from "commander";
import { LocalProvider, MASTER_KEY_VARIABLE } from "../../providers/local.js";
import { ConfigError } from "../errors.js";
import { DevKeySource } from "../keys/dev-key-source.js";
import { DirectKeySource } from "../keys/direct-key-source.js";
import type { KeySource } from "../keys/key-source.js";
import { KeyringKeySource } from "../keys/keyring-key-source.js";
import { createLogger, LOG_LEVELS } from "../ops/logger.js";
import { DaemonMetrics } from "../ops/metrics.js";
import { PACKAGE_VERSION } from "../package-info.js";
import { type Daemon, startDaemon } from "../server/daemon.js";
import { SOCKET_FILE_NAME } from "../wire/socket-address.js";
import { applyConfigFile } from "./config-file.js";
import { ensureDevKeyFile } from "./dev-key.js";
import {
  addProviderOptions,
  checkProviderFlags,
  type ProviderFlagsInput,
  providerRegistry,
} from "./provider-flags.js";
import { parseServeConfig, type ServeOptionsInput } from "./serve-config.js";
import { StopSignals } from "./stop-signals.js";

function option(
  flags: string,
  description: string,
  variable: string,
  defaultValue?: string,
): Option {
  const created = new Option(flags, description).env(`KMS_ENVELOPE_${variable}`);
  return defaultValue === undefined ? created : created.default(defaultValue);
}

/**
 * `kms-envelope serve`: the plugin daemon. `stopSignals` are caught from process start when
 * main.ts knew the command; otherwise they are caught here.
 */
export function serveCommand(stopSignals?: StopSignals): Command {
  const command = new Command("serve")
    .description("serve KMS v2, KMS v1beta1, the field service and gRPC health on a Unix socket")
    .addOption(
      option(
        "--socket <path>",
        `socket path or unix:///path (default <run-dir>/${SOCKET_FILE_NAME})`,
        "SOCKET",
      ),
    )
    .addOption(
      option(
        "--run-dir <dir>",
        "directory for the default socket and the development key",
        "RUN_DIR",
      ),
    )
    .addOption(
      option(
        "--workspace <name>",
        "workspace whose key seals KMS ciphertexts",
        "WORKSPACE",
        "kubernetes",
      ),
    )
    .addOption(
      new Option(
        "--dev",
        "use a generated development key kept in <run-dir>/dev-master-key (never in production)",
      ).env("KMS_ENVELOPE_DEV"),
    )
    .addOption(
      option(
        "--http-address <host:port>",
        'loopback address for /healthz, /livez, /readyz, /metrics, or "off"',
        "HTTP_ADDRESS",
        "127.0.0.1:8089",
      ),
    )
    .addOption(
      option("--socket-mode <octal>", "permissions of the socket file", "SOCKET_MODE", "0600"),
    )
    .addOption(
      option(
        "--socket-owner <uid[:gid]>",
        "owner of the socket file (default: the daemon's user)",
        "SOCKET_OWNER",
      ),
    )
    .addOption(
      option("--log-level <level>", `one of ${LOG_LEVELS.join(", ")}`, "LOG_LEVEL", "info"),
    )
    .addOption(
      option(
        "--shutdown-timeout <duration>",
        "how long SIGTERM waits for in-flight calls",
        "SHUTDOWN_TIMEOUT",
        "30s",
      ),
    )
    .addOption(
      option(
        "--health-interval <duration>",
        "how often the custody provider is re-checked",
        "HEALTH_INTERVAL",
        "30s",
      ),
    )
    .addOption(
      option(
        "--health-timeout <duration>",
        "deadline of one provider check",
        "HEALTH_TIMEOUT",
        "5s",
      ),
    )
    .addOption(
      option(
        "--grace-period <duration>",
        "how long a failing provider is tolerated before crypto stops",
        "GRACE_PERIOD",
        "5m",
      ),
    )
    .addOption(
      option(
        "--max-request-bytes <bytes>",
        "largest accepted request message (bytes, or KiB/MiB)",
        "MAX_REQUEST_BYTES",
        "4MiB",
      ),
    )
    .addOption(
      option(
        "--max-connection-buffer-bytes <bytes>",
        "request and response bytes one client connection may make the daemon hold",
        "MAX_CONNECTION_BUFFER_BYTES",
        "16MiB",
      ),
    )
    .addOption(
      option(
        "--max-buffer-bytes <bytes>",
        "request and response bytes all connections together may make the daemon hold",
        "MAX_BUFFER_BYTES",
        "64MiB",
      ),
    )
    .addOption(
      option(
        "--max-streams-per-connection <count>",
        "calls one connection may have open at once",
        "MAX_STREAMS_PER_CONNECTION",
        "100",
      ),
    )
    .addOption(
      option(
        "--max-connections <count>",
        "client connections open at once; more are closed on arrival",
        "MAX_CONNECTIONS",
        "64",
      ),
    )
    .addOption(
      option(
        "--call-timeout <duration>",
        "longest a call may take from its first request byte to its last response byte",
        "CALL_TIMEOUT",
        "30s",
      ),
    )
    .addOption(
      option(
        "--idle-timeout <duration>",
        "a client connection with no call open for this long is closed",
        "IDLE_TIMEOUT",
        "5m",
      ),
    )
    .addOption(
      option(
        "--field-workers <count>",
        "worker threads that seal and open field-service batches (default: one per core)",
        "FIELD_WORKERS",
        String(availableParallelism()),
      ),
    )
    .addOption(
      option(
        "--max-fields-per-request <count>",
        "field values one field-service call may carry",
        "MAX_FIELDS_PER_REQUEST",
        "100000",
      ),
    )
    .addOption(
      option(
        "--max-fields-per-record <count>",
        "field values one record may carry",
        "MAX_FIELDS_PER_RECORD",
        "1000",
      ),
    )
    .addOption(
      option(
        "--keyring <file>",
        "keyring file of wrapped master-key versions (cloud and custom providers); without it ENCRYPTION_MASTER_KEY is used",
        "KEYRING",
      ),
    )
    .addOption(
      option(
        "--keyring-poll-interval <duration>",
        "how often the keyring file is checked for changes",
        "KEYRING_POLL_INTERVAL",
        "10s",
      ),
    );
  command.addOption(
    option(
      "--config <file>",
      "YAML file of serve settings by flag name (flags and environment win)",
      "CONFIG",
    ),
  );
  return addProviderOptions(command).action(
    async (options: ServeOptionsInput & ProviderFlagsInput & { config?: string }) => {
      const stop = stopSignals ?? StopSignals.install();
      // The action's options are the command's own values, which the file fills in.
      if (options.config !== undefined) await applyConfigFile(command, options.config);
      const config = parseServeConfig(options);
      await checkProviderFlags(options);
      const logger = createLogger(config.logLevel);
      logger.info({ version: PACKAGE_VERSION, pid: process.pid }, "kms-envelope starting");
      const metrics = new DaemonMetrics();
      const observe = metrics.observeProviderCall.bind(metrics);
      const observeAttempt = metrics.observeProviderAttempt.bind(metrics);
      let source: KeySource;
      if (config.dev) {
        const other = process.env[MASTER_KEY_VARIABLE]
          ? MASTER_KEY_VARIABLE
          : config.keyring && "--keyring";
        if (other) {
          // --dev brings its own key; another key source beside it would be silently ignored.
          throw new ConfigError(
            "--dev",
            `${other} is set too, and --dev brings its own key`,
            `drop --dev or ${other}`,
          );
        }
        const devKey = await ensureDevKeyFile(config.runDir);
        logger.warn(
          { keyFile: devKey.path, created: devKey.created },
          "DEVELOPMENT MODE: the master key is a local file, not protected custody. Never use --dev in production.",
        );
        source = new DevKeySource(devKey.path);
      } else if (config.keyring === undefined) {
        source = new DirectKeySource(new LocalProvider(process.env), observe);
      } else {
        source = new KeyringKeySource({
          path: config.keyring,
          registry: await providerRegistry(options, process.env, observe, observeAttempt, {
            info: (message) => logger.info(message),
          }),
          pollMs: config.keyringPollMs,
        });
      }
      let daemon: Daemon;
      try {
        daemon = await startDaemon(config, source, logger, metrics, stop.signal);
      } catch (error) {
        // A stop request during start-up is an orderly exit: startDaemon undid what it did.
        if (!stop.signal.aborted) throw error;
        logger.info({ signal: stop.received }, "stopped during start-up");
        return;
      }
      logger.info({ signal: await stop.stopped() }, "draining in-flight calls");
      try {
        await daemon.shutdown();
      } catch (error) {
        logger.error({ err: error }, "shutdown failed");
        process.exitCode = 1;
      }
    },
  );
}
