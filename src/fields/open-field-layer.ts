import { loadEncryptionConfiguration } from "../engine/config/encryption-configuration.js";
import {
  EncryptionEngine,
  type EngineOptions,
  type ResourceTransformers,
} from "../engine/encryption-engine.js";
import { ReloadingEngine } from "../engine/reloading-engine.js";
import { FieldLayer, missingRoute } from "./field-layer.js";
import { loadFieldMap } from "./field-map.js";
import { FieldServiceClient } from "./field-service-client.js";

export interface FieldLayerSources extends EngineOptions {
  /** Field map file (YAML or JSON). */
  readonly fieldMapPath: string;
  /** EncryptionConfiguration file; needed when the map routes a resource through the engine. */
  readonly encryptionConfigPath?: string;
  /**
   * Follow edits of the EncryptionConfiguration file, checking it this often (kube-apiserver's
   * automatic reload polls every minute); unset, the file is read once.
   */
  readonly reloadIntervalMs?: number;
  /** Accept kms apiVersion v1 providers (kube-apiserver's KMSv1 feature gate). */
  readonly allowKmsV1?: boolean;
  /** The kms-envelope daemon socket; needed when the map routes a resource through it. */
  readonly daemonSocket?: string;
  /** Per-call timeout toward the daemon's field service (default 5 s). */
  readonly daemonTimeoutMs?: number;
  /**
   * Pass records of resources the field map does not list through unchanged; by default they
   * are refused (UNMAPPED_RESOURCE). A map entry with no fields does the same for one resource.
   */
  readonly allowUnmapped?: boolean;
}

/**
 * Builds the field layer an application or a CLI command uses: loads the field map, starts
 * the engine when the map has engine resources, and connects to the daemon when it has
 * field-service resources. This is the FieldCodec the store is given.
 */
export async function openFieldLayer(sources: FieldLayerSources): Promise<FieldLayer> {
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
  let fieldService: FieldServiceClient | undefined;
  if (routes.has("field-service")) {
    if (sources.daemonSocket === undefined) {
      engine?.close();
      throw missingRoute("field-service", `field map ${sources.fieldMapPath}`);
    }
    fieldService = new FieldServiceClient({
      socketPath: sources.daemonSocket,
      timeoutMs: sources.daemonTimeoutMs ?? 5_000,
    });
  }
  return new FieldLayer({
    fieldMap,
    engine,
    fieldService,
    allowUnmapped: sources.allowUnmapped,
  });
}
