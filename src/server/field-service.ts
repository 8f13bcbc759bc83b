import type { SealingService } from "../keys/sealing-service.js";
import type { DaemonMetrics, FieldOperation } from "../ops/metrics.js";
import type { FieldMethod } from "./field-batch.js";
import type { FieldWorkerPool } from "./field-worker-pool.js";
import type { RawHandler, ServiceHandlers } from "./grpc-server.js";

/**
 * Handlers of `kms_envelope.field.v1.FieldService`. Health is checked here, on the main
 * thread; decoding, sealing, opening, lookup tokens and encoding run in the worker pool on the
 * raw request bytes.
 */
export function fieldService(
  envelope: SealingService,
  workers: FieldWorkerPool,
  metrics: DaemonMetrics,
): ServiceHandlers {
  const handler = (method: FieldMethod, operation: FieldOperation): RawHandler => ({
    raw: async (message) => {
      envelope.requireUsable();
      const outcome = await workers.run(method, message);
      if (outcome.error === undefined) {
        metrics.countFieldValues(operation, outcome.fields);
        if (outcome.stale === true) metrics.countStaleOpen();
      }
      return outcome;
    },
  });
  return {
    Seal: handler("Seal", "seal"),
    Open: handler("Open", "open"),
    Lookup: handler("Lookup", "lookup"),
  };
}
