import { workerData } from "node:worker_threads";
import { loadEncryptionConfiguration } from "../engine/config/encryption-configuration.js";
import { EncryptionEngine, type ResourceTransformers } from "../engine/encryption-engine.js";
import { ReloadingEngine } from "../engine/reloading-engine.js";
import { KmsEnvelopeError } from "../errors.js";
import { serveWorker } from "../workers/worker-host.js";
import { openEngineFields, sealEngineFields } from "./engine-fields.js";
import type { EngineAnswer, EngineJob, EngineWorkerSources } from "./engine-workers.js";

// A field-layer worker thread: its own engine over the same EncryptionConfiguration (followed
// as the layer's own engine follows it), sealing and opening parts of large engine batches.

const sources = workerData as EngineWorkerSources;
const engine: ResourceTransformers =
  sources.reloadIntervalMs === undefined
    ? await EncryptionEngine.start(
        await loadEncryptionConfiguration(sources.encryptionConfigPath, {
          allowKmsV1: sources.allowKmsV1,
        }),
        { kmsV2Timing: sources.kmsV2Timing },
      )
    : await ReloadingEngine.start(sources.encryptionConfigPath, {
        allowKmsV1: sources.allowKmsV1,
        kmsV2Timing: sources.kmsV2Timing,
        pollIntervalMs: sources.reloadIntervalMs,
      });

async function run(job: EngineJob): Promise<EngineAnswer> {
  try {
    const transformer = engine.transformerFor(job.resource);
    const recordId = (item: { recordId: string }) => item.recordId;
    return job.op === "seal"
      ? { sealed: await sealEngineFields(transformer, job.resource, job.items, recordId) }
      : { opened: await openEngineFields(transformer, job.resource, job.items, recordId) };
  } catch (error) {
    if (error instanceof KmsEnvelopeError)
      return { refusal: { code: error.code, message: error.message } };
    return { failure: error instanceof Error ? (error.stack ?? error.message) : String(error) };
  }
}

serveWorker<never, EngineJob, EngineAnswer>({
  run: async (job) => ({ value: await run(job) }),
  close() {
    engine.close();
  },
});
