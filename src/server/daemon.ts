import type { ServeConfig } from "../cli/serve-config.js";
import { loadSecretbox } from "../crypto/secretbox.js";
import { Envelope } from "../keys/envelope.js";
import { HealthMonitor } from "../keys/health-monitor.js";
import type { KeySource } from "../keys/key-source.js";
import type { Logger } from "../ops/logger.js";
import { DaemonMetrics } from "../ops/metrics.js";
import { type OpsServer, startOpsServer } from "../ops/ops-server.js";
import type { ProbeSources } from "../ops/probes.js";
import { fieldService } from "./field-service.js";
import { GrpcServer } from "./grpc-server.js";
import { healthService } from "./health-service.js";
import { kmsV1Service } from "./kms-v1-service.js";
import { kmsV2Service } from "./kms-v2-service.js";
import { services } from "./protos.js";
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

/** Loads the keys, starts health checks, binds the socket and the probes. */
export async function startDaemon(
  config: ServeConfig,
  source: KeySource,
  logger: Logger,
  metrics: DaemonMetrics = new DaemonMetrics(),
): Promise<Daemon> {
  await loadSecretbox();
  const keys = await source.load();
  const providerName = keys.primary.keyId.split(":")[0] as string;
  metrics.setKeys(keys.primary.keyId, keys.keyIds.length);

  const health = new HealthMonitor({
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
  await health.start();

  const envelope = new Envelope({ keys, kmsWorkspace: config.workspace, health });
  let serving = false;
  const probes: ProbeSources = {
    health: () => health.snapshot(),
    selfTest: () => envelope.selfTest(),
    serving: () => serving,
  };
  const healthGrpc = healthService(SERVED_SERVICES, probes);
  const server = new GrpcServer({ maxReceiveBytes: config.maxRequestBytes, logger, metrics });
  server.addService(services.kmsV2.service, kmsV2Service(envelope, probes));
  server.addService(services.kmsV1.service, kmsV1Service(envelope));
  server.addService(services.field.service, fieldService(envelope, metrics));
  server.addService(services.health.service, healthGrpc.handlers);

  const socketPath = config.socket;
  let socketId: Awaited<ReturnType<typeof socketIdentity>>;
  let ops: OpsServer | undefined;
  try {
    await prepareSocketFile(socketPath);
    await server.listen(socketPath);
    try {
      await secureSocketFile(socketPath, config.socketMode, config.socketOwner);
    } finally {
      // Taken after chmod/chown, which change ctime, so shutdown recognises the file.
      socketId = await socketIdentity(socketPath);
    }
    if (config.http !== undefined) {
      ops = await startOpsServer({ ...config.http, sources: probes, metrics, logger });
    }
  } catch (error) {
    await server.shutdown(0);
    health.stop();
    envelope.dispose();
    await removeSocketFile(socketPath, socketId);
    await source.close();
    throw error;
  }
  serving = true;
  logger.info(
    {
      socket: socketPath,
      providers: source.describe(),
      keyId: keys.primary.keyId,
      keyVersions: keys.keyIds,
      workspace: config.workspace,
      http: ops?.address ?? "off",
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
      envelope.replaceKeys(next).dispose();
      metrics.setKeys(next.primary.keyId, next.keyIds.length);
      metrics.countKeyReload("ok");
      logger.info({ keyId: next.primary.keyId, keyVersions: next.keyIds }, "keyring reloaded");
    } catch (error) {
      metrics.countKeyReload("failed");
      logger.error(
        { reason: (error as Error).message },
        "keyring reload failed; keeping the current keys",
      );
    } finally {
      reloading = false;
    }
  };
  const stopWatching = source.watch(() => void reloadKeys());

  let stopping: Promise<void> | undefined;
  const shutdown = async (): Promise<void> => {
    serving = false;
    healthGrpc.closeWatches();
    await server.shutdown(config.shutdownTimeoutMs);
    stopWatching();
    health.stop();
    await ops?.close();
    await removeSocketFile(socketPath, socketId);
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
