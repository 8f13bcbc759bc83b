import { loadSecretbox, secretboxBackendName } from "../crypto/secretbox.js";
import { errorMessage } from "../errors.js";
import { HealthMonitor } from "../keys/health-monitor.js";
import type { KeySource } from "../keys/key-source.js";
import type { MasterKeySet } from "../keys/master-key-set.js";
import { SealingService } from "../keys/sealing-service.js";
import type { Logger } from "../ops/logger.js";
import { DaemonMetrics } from "../ops/metrics.js";
import { type OpsServer, startOpsServer } from "../ops/ops-server.js";
import { checkReadyz, type ProbeSources } from "../ops/probes.js";
import { withKmsV2Codec } from "../wire/kms-v2-codec.js";
import { services } from "../wire/protos.js";
import type { DaemonOptions } from "./daemon-options.js";
import { fieldService } from "./field-service.js";
import { FieldWorkerPool } from "./field-worker-pool.js";
import { GrpcServer } from "./grpc-server.js";
import { healthService } from "./health-service.js";
import { kmsV1Service } from "./kms-v1-service.js";
import { kmsV2Service } from "./kms-v2-service.js";
import {
  prepareSocketFile,
  removeSocketFile,
  secureSocketFile,
  socketIdentity,
} from "./socket-file.js";

/** A running daemon. */
export interface Daemon {
  /** Primary key id reported by Status. */
  readonly keyId: string;
  /** Loopback HTTP address, when enabled. */
  readonly httpAddress: string | undefined;
  /** Stops accepting calls, drains in-flight ones (up to the shutdown timeout), cleans up. */
  shutdown(): Promise<void>;
}

const SERVED_SERVICES = [
  "v2.KeyManagementService",
  "v1beta1.KeyManagementService",
  "kms_envelope.field.v1.FieldService",
];

type Cleanup = () => unknown;

/** Undoes start-up steps in reverse order; one failing step does not skip the others. */
async function undo(cleanups: Cleanup[], logger: Logger): Promise<void> {
  for (const cleanup of cleanups.reverse()) {
    try {
      await cleanup();
    } catch (error) {
      logger.error({ reason: errorMessage(error) }, "clean-up after a failed start failed");
    }
  }
}

function healthMonitor(
  config: DaemonOptions,
  source: KeySource,
  providerName: string,
  logger: Logger,
  metrics: DaemonMetrics,
): HealthMonitor {
  return new HealthMonitor({
    check: (signal) => source.checkHealth(signal),
    intervalMs: config.healthIntervalMs,
    timeoutMs: config.healthTimeoutMs,
    gracePeriodMs: config.gracePeriodMs,
    onCheck: (snapshot, changed) => {
      metrics.observeProviderCheck(
        providerName,
        snapshot.errorClass ?? "ok",
        snapshot.healthy,
        snapshot.suspended,
      );
      if (!changed) {
        logger.debug(
          { provider: providerName, errorClass: snapshot.errorClass },
          "custody provider checked",
        );
        return;
      }
      if (snapshot.healthy) logger.info({ provider: providerName }, "custody provider healthy");
      else
        logger.error(
          { provider: providerName, errorClass: snapshot.errorClass, reason: snapshot.message },
          "custody provider failing",
        );
    },
  });
}

/**
 * Starts the daemon. What the operator may have got wrong (the socket path and the probe
 * address) is checked and taken before the custody provider is contacted; then the keys are
 * loaded, health checks started and the socket bound. `signal` (a stop request) is honoured
 * between every step: whatever was done is undone and the promise rejects.
 */
export async function startDaemon(
  config: DaemonOptions,
  source: KeySource,
  logger: Logger,
  metrics: DaemonMetrics = new DaemonMetrics(),
  signal?: AbortSignal,
): Promise<Daemon> {
  const cleanups: Cleanup[] = [() => source.close()];
  const step = async <T>(work: () => Promise<T>, cleanup?: (value: T) => unknown): Promise<T> => {
    signal?.throwIfAborted();
    const value = await work();
    if (cleanup !== undefined) cleanups.push(() => cleanup(value));
    signal?.throwIfAborted();
    return value;
  };
  let health: HealthMonitor | undefined;
  let envelope: SealingService | undefined;
  let serving = false;
  const probes: ProbeSources = {
    starting: () => envelope === undefined,
    health: () => (health as HealthMonitor).snapshot(),
    selfTest: () => envelope?.selfTest() ?? false,
    serving: () => serving,
  };
  metrics.observeReadiness(() => checkReadyz(probes).ok);
  const socketPath = config.socket;
  let socketId: Awaited<ReturnType<typeof socketIdentity>>;
  let ops: OpsServer | undefined;
  try {
    await step(() => loadSecretbox());
    const takeover = await step(() => prepareSocketFile(socketPath));
    if (takeover === "stale-socket-removed") {
      logger.warn(
        { socket: socketPath },
        "removed a stale socket left by a daemon that did not exit cleanly",
      );
    }
    if (config.http !== undefined) {
      const http = config.http;
      ops = await step(
        () => startOpsServer({ ...http, sources: probes, metrics, logger }),
        (server) => server.close(),
      );
    }
    const loaded = await step(
      () => source.load(signal),
      (set) => set.dispose(),
    );
    const providerName = loaded.primary.keyId.split(":")[0] as string;
    metrics.setKeys(loaded.primary.keyId, loaded.keyIds.length);
    const monitor = healthMonitor(config, source, providerName, logger, metrics);
    health = monitor;
    await step(
      () => monitor.start(),
      () => monitor.stop(),
    );
    const workers = await step(
      () =>
        FieldWorkerPool.start({ size: config.fieldWorkers, keys: loaded, limits: config, logger }),
      (pool) => pool.close(),
    );
    metrics.observeFieldWorkers(() => workers.stats());
    envelope = new SealingService({
      keys: loaded,
      kmsWorkspace: config.workspace,
      health: monitor,
    });
    const healthGrpc = healthService(SERVED_SERVICES, probes);
    const server = new GrpcServer({ limits: config.limits, logger, metrics });
    server.addService(
      withKmsV2Codec(services.kmsV2.service),
      kmsV2Service(envelope, probes, metrics.keyIds),
    );
    server.addService(services.kmsV1.service, kmsV1Service(envelope));
    server.addService(services.field.service, fieldService(envelope, workers, metrics));
    server.addService(services.health.service, healthGrpc.handlers);
    await step(
      () => server.listen(socketPath),
      () => server.shutdown(0),
    );
    cleanups.push(() => removeSocketFile(socketPath, socketId));
    try {
      await secureSocketFile(socketPath, config.socketMode, config.socketOwner);
    } finally {
      // Taken after chmod/chown, which change ctime, so shutdown recognises the file.
      socketId = await socketIdentity(socketPath);
    }
    signal?.throwIfAborted();
    return serve({
      config,
      source,
      logger,
      metrics,
      keys: loaded,
      envelope,
      workers,
      server,
      monitor,
      closeWatches: () => healthGrpc.closeWatches(),
      ops,
      socketId,
      setServing: (value) => {
        serving = value;
      },
    });
  } catch (error) {
    envelope = undefined;
    await undo(cleanups, logger);
    throw error;
  }
}

/** The running phase: key reloads from the source, and an orderly shutdown. */
function serve(parts: {
  config: DaemonOptions;
  source: KeySource;
  logger: Logger;
  metrics: DaemonMetrics;
  keys: MasterKeySet;
  envelope: SealingService;
  workers: FieldWorkerPool;
  server: GrpcServer;
  monitor: HealthMonitor;
  closeWatches: () => void;
  ops: OpsServer | undefined;
  socketId: string | undefined;
  setServing: (serving: boolean) => void;
}): Daemon {
  const { config, source, logger, metrics, envelope, workers, server, monitor, ops } = parts;
  parts.setServing(true);
  logger.info(
    {
      socket: config.socket,
      providers: source.describe(),
      keyId: parts.keys.primary.keyId,
      keyVersions: parts.keys.keyIds,
      workspace: config.workspace,
      http: ops?.address ?? "off",
      fieldWorkers: config.fieldWorkers,
      secretbox: secretboxBackendName(),
    },
    "kms-envelope serving",
  );

  // One reload at a time; on failure the current keys stay in service (a half-written or
  // unreadable keyring must never take the daemon down) and the next poll tries again.
  let reloading = false;
  const reloadKeys = async (): Promise<void> => {
    if (reloading) return;
    reloading = true;
    try {
      const next = await source.load();
      workers.replaceKeys(next);
      envelope.replaceKeys(next).dispose();
      metrics.setKeys(next.primary.keyId, next.keyIds.length);
      metrics.countKeyReload("ok");
      logger.info({ keyId: next.primary.keyId, keyVersions: next.keyIds }, "keyring reloaded");
    } catch (error) {
      metrics.countKeyReload("failed");
      logger.error(
        { reason: errorMessage(error) },
        "keyring reload failed; keeping the current keys",
      );
    } finally {
      reloading = false;
    }
  };
  const stopWatching = source.watch(() => void reloadKeys());

  let stopping: Promise<void> | undefined;
  const shutdown = async (): Promise<void> => {
    parts.setServing(false);
    parts.closeWatches();
    await server.shutdown(config.shutdownTimeoutMs);
    await workers.close();
    stopWatching();
    monitor.stop();
    await ops?.close();
    await removeSocketFile(config.socket, parts.socketId);
    envelope.dispose();
    await source.close();
    logger.info("kms-envelope stopped");
  };
  return {
    get keyId() {
      return envelope.primaryKeyId;
    },
    httpAddress: ops?.address,
    shutdown: () => {
      stopping ??= shutdown();
      return stopping;
    },
  };
}
