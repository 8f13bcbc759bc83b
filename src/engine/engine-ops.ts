import type { IncomingMessage, ServerResponse } from "node:http";
import type { Registry } from "prom-client";
import { opsRequestHandler } from "../ops/ops-handler.js";
import type { KmsProviderHealth } from "./encryption-engine.js";

/**
 * Anything that reports kms provider health: an {@link EncryptionEngine}, a
 * {@link ReloadingEngine} or a {@link FieldLayer}.
 */
export interface HealthReporter {
  /** Health of every kms provider, in configuration order, as of its last check. */
  health(): KmsProviderHealth[];
}

/** An application's view of its encryption health, for its own health endpoint or logs. */
export interface EngineHealthSummary {
  /** True when every kms provider passed its last check (also when there is none). */
  readonly ok: boolean;
  /** `ok`, or one line naming each failing provider and why (no key material, no plaintext). */
  readonly reason: string;
  /** Every kms provider, in configuration order. */
  readonly providers: readonly KmsProviderHealth[];
}

/** What {@link engineOpsReport} and {@link engineOpsHandler} read. */
export interface EngineOpsSources {
  /** The engine (or field layer) whose kms providers are checked. */
  readonly engine: HealthReporter;
  /** The registry its {@link EngineMetrics} report into (and anything else to expose). */
  readonly registry: Registry;
}

/** Health and metrics at one moment, ready to be served or logged. */
export interface EngineOpsReport {
  /** The health summary. */
  readonly health: EngineHealthSummary;
  /** The registry's metrics in the Prometheus text format. */
  readonly metrics: string;
  /** The content type to serve `metrics` with. */
  readonly contentType: string;
}

/**
 * Summarises an engine's kms provider health the way kube-apiserver's `kms-providers` readyz
 * check does: unhealthy while any provider's last Status check failed. Makes no plugin call.
 *
 * @param engine - An engine, reloading engine or field layer.
 * @returns The summary; `ok` with no kms provider at all.
 */
export function engineHealth(engine: HealthReporter): EngineHealthSummary {
  const providers = engine.health();
  const failing = providers.filter((provider) => !provider.ok);
  const reason =
    failing.length === 0
      ? "ok"
      : failing
          .map(
            (provider) =>
              `kms provider ${provider.name} (${provider.apiVersion}): ${provider.detail}`,
          )
          .join("; ");
  return { ok: failing.length === 0, reason, providers };
}

/**
 * The engine's health summary and the registry's Prometheus text, for an application that
 * serves them its own way (a framework route, a log line, a status page).
 *
 * @param sources - The engine and the registry its metrics report into.
 * @returns Health, metrics text and its content type.
 */
export async function engineOpsReport(sources: EngineOpsSources): Promise<EngineOpsReport> {
  return {
    health: engineHealth(sources.engine),
    metrics: await sources.registry.metrics(),
    contentType: sources.registry.contentType,
  };
}

/**
 * A `node:http` request handler (also usable as an Express or Connect handler) answering like
 * the daemon's probe port: `GET /metrics` with the registry's text, `/healthz` and `/readyz`
 * 200 `ok` or 503 with {@link engineHealth}'s reason, and `/livez` always 200 (restarting an
 * application does not heal a plugin, which is why kube-apiserver keeps its kms checks off
 * `/livez`). Other paths answer 404 and other methods 405.
 *
 * @example
 * ```ts
 * createServer(engineOpsHandler({ engine, registry })).listen(9464, "127.0.0.1");
 * ```
 *
 * @param sources - The engine and the registry its metrics report into.
 * @param onMetricsError - Told why rendering the metrics failed (the answer is then a bare 500);
 * by default nothing is reported.
 * @returns The handler.
 */
export function engineOpsHandler(
  sources: EngineOpsSources,
  onMetricsError: (error: unknown) => void = () => undefined,
): (request: IncomingMessage, response: ServerResponse) => void {
  const readiness = () => engineHealth(sources.engine);
  return opsRequestHandler({
    probes: {
      "/healthz": readiness,
      "/livez": () => ({ ok: true, reason: "ok" }),
      "/readyz": readiness,
    },
    registry: sources.registry,
    onMetricsError,
  });
}
