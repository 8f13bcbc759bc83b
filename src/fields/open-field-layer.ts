import { loadEncryptionConfiguration } from "../engine/config/encryption-configuration.js";
import {
  EncryptionEngine,
  type EngineOptions,
  type ResourceTransformers,
} from "../engine/encryption-engine.js";
import { ReloadingEngine } from "../engine/reloading-engine.js";
import { ConfigError } from "../errors.js";
import { EngineWorkers } from "./engine-workers.js";
import { type FieldLayer, MapFieldLayer, missingRoute } from "./field-layer.js";
import { loadFieldMap } from "./field-map.js";
import { FieldServiceClient } from "./field-service-client.js";

/**
 * Where {@link openFieldLayer} finds what a field layer needs. Engine options (`kmsV2Timing`,
 * `metrics`) apply to the engine it starts.
 */
export interface FieldLayerSources extends EngineOptions {
  /** Field map file (YAML or JSON). */
  readonly fieldMapPath: string;
  /** EncryptionConfiguration file; needed when the map routes a resource through the engine. */
  readonly encryptionConfigPath?: string;
  /**
   * Follow edits of the EncryptionConfiguration file, checking it this often (kube-apiserver's
   * automatic reload polls every minute), in ms; unset, the file is read once. See
   * {@link ReloadingEngine}.
   */
  readonly reloadIntervalMs?: number;
  /** Accept kms apiVersion v1 providers (kube-apiserver's KMSv1 feature gate). */
  readonly allowKmsV1?: boolean;
  /** The kms-envelope daemon socket; needed when the map routes a resource through it. */
  readonly daemonSocket?: string;
  /** Per-call timeout toward the daemon's field service, in ms; default 5000. */
  readonly daemonTimeoutMs?: number;
  /**
   * Pass records of resources the field map does not list through unchanged; by default they
   * are refused (`UNMAPPED_RESOURCE`). A map entry with no fields does the same for one
   * resource.
   */
  readonly allowUnmapped?: boolean;
  /**
   * Worker threads for engine batches of 500 fields or more, which are cut into parts sealed
   * or opened on several cores at once (smaller batches stay on the caller's thread): a count,
   * or `"auto"` for one per core. Each worker starts its own engine from the same
   * EncryptionConfiguration (and kms plugins), and follows its edits as the layer does; what
   * it transforms is counted in `metrics`. Unset, every batch runs on the caller's thread.
   * Close the layer to stop them.
   */
  readonly workers?: number | "auto";
}

/**
 * Builds the field layer an application or a CLI command uses: loads the field map, starts
 * the engine when the map has engine resources, and connects to the daemon when it has
 * field-service resources. This is the FieldCodec the store is given.
 *
 * @remarks
 * The daemon is not contacted here: an unreachable daemon shows at the first call. A kms
 * plugin that is down does not fail the start either (see {@link EncryptionEngine.start}).
 * Close the layer when done.
 *
 * @param sources - The field map and, as the map's routes need them, the EncryptionConfiguration
 * and the daemon socket.
 * @throws `INVALID_CONFIG` when the field map or the EncryptionConfiguration does not load, or
 * the map routes resources through the engine without `encryptionConfigPath` or through the
 * field service without `daemonSocket`, or `workers` is neither a count of at least 1 nor
 * `"auto"`.
 */
export async function openFieldLayer(sources: FieldLayerSources): Promise<FieldLayer> {
  const { workers } = sources;
  if (workers !== undefined && workers !== "auto" && !(Number.isInteger(workers) && workers >= 1))
    throw new ConfigError(
      "workers",
      `is ${JSON.stringify(workers)}`,
      'give a whole number of worker threads, at least 1, or "auto" for one per core',
    );
  const fieldMap = await loadFieldMap(sources.fieldMapPath);
  const routes = new Set([...fieldMap.resources.values()].map((spec) => spec.route));
  let engine: ResourceTransformers | undefined;
  if (routes.has("engine")) {
    if (sources.encryptionConfigPath === undefined)
      throw missingRoute("engine", `field map ${sources.fieldMapPath}`);
    engine =
      sources.reloadIntervalMs === undefined
        ? await EncryptionEngine.start(
            await loadEncryptionConfiguration(sources.encryptionConfigPath, {
              allowKmsV1: sources.allowKmsV1,
            }),
            sources,
          )
        : await ReloadingEngine.start(sources.encryptionConfigPath, {
            ...sources,
            pollIntervalMs: sources.reloadIntervalMs,
          });
  }
  if (routes.has("field-service") && sources.daemonSocket === undefined) {
    engine?.close();
    throw missingRoute("field-service", `field map ${sources.fieldMapPath}`);
  }
  let pool: EngineWorkers | undefined;
  if (engine !== undefined && workers !== undefined && sources.encryptionConfigPath !== undefined) {
    try {
      pool = await EngineWorkers.start(
        workers,
        {
          encryptionConfigPath: sources.encryptionConfigPath,
          allowKmsV1: sources.allowKmsV1,
          reloadIntervalMs: sources.reloadIntervalMs,
          kmsV2Timing: sources.kmsV2Timing,
        },
        sources.metrics,
      );
    } catch (error) {
      engine.close();
      throw error;
    }
  }
  const fieldService =
    routes.has("field-service") && sources.daemonSocket !== undefined
      ? new FieldServiceClient({
          socketPath: sources.daemonSocket,
          timeoutMs: sources.daemonTimeoutMs ?? 5_000,
        })
      : undefined;
  return new MapFieldLayer({
    fieldMap,
    engine,
    fieldService,
    allowUnmapped: sources.allowUnmapped,
    workers: pool,
  });
}
