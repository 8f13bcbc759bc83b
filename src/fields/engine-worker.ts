import { workerData } from "node:worker_threads";
import { wipe } from "../crypto/wipe.js";
import { loadEncryptionConfiguration } from "../engine/config/encryption-configuration.js";
import { EncryptionEngine, type ResourceTransformers } from "../engine/encryption-engine.js";
import { MetricsRecorder } from "../engine/relayed-metrics.js";
import { ReloadingEngine } from "../engine/reloading-engine.js";
import type { Writer } from "../engine/transformers/transformer.js";
import { KmsEnvelopeError } from "../errors.js";
import { serveWorker } from "../workers/worker-host.js";
import type { Posted } from "../workers/worker-protocol.js";
import { openEngineFields, sealEngineFields } from "./engine-fields.js";
import {
  buffersOf,
  type EngineAnswer,
  type EngineJob,
  type EngineWorkerSources,
  pack,
  unpack,
} from "./engine-workers.js";

// A field-layer worker thread: its own engine over the same EncryptionConfiguration (followed
// as the layer's own engine follows it), sealing and opening parts of large engine batches.

const sources = workerData as EngineWorkerSources;
const recorder = sources.metered === true ? new MetricsRecorder() : undefined;
const engine: ResourceTransformers =
  sources.reloadIntervalMs === undefined
    ? await EncryptionEngine.start(
        await loadEncryptionConfiguration(sources.encryptionConfigPath, {
          allowKmsV1: sources.allowKmsV1,
        }),
        { kmsV2Timing: sources.kmsV2Timing, metrics: recorder },
      )
    : await ReloadingEngine.start(sources.encryptionConfigPath, {
        allowKmsV1: sources.allowKmsV1,
        kmsV2Timing: sources.kmsV2Timing,
        metrics: recorder,
        pollIntervalMs: sources.reloadIntervalMs,
      });

/** The few distinct writers of a part, and each field's index among them. */
function writersOf(
  done: readonly { writer: Writer }[],
): Pick<EngineAnswer, "writers" | "writerOf"> {
  const writers: Writer[] = [];
  const writerOf = new Uint16Array(done.length);
  for (const [index, { writer }] of done.entries()) {
    let at = writers.findIndex(
      (known) => known.provider === writer.provider && known.keyId === writer.keyId,
    );
    if (at < 0) at = writers.push(writer) - 1;
    writerOf[index] = at;
  }
  return { writers, writerOf };
}

async function run(job: EngineJob): Promise<Posted<EngineAnswer>> {
  recorder?.begin();
  const answer = await answerTo(job);
  if (recorder !== undefined) answer.value.counted = recorder.take();
  return answer;
}

async function answerTo(job: EngineJob): Promise<Posted<EngineAnswer>> {
  try {
    const transformer = engine.transformerFor(job.resource);
    const recordId = (item: { recordId: string }) => item.recordId;
    if (job.op === "seal") {
      const values = unpack(job.values);
      try {
        const items = job.paths.map((path, index) => ({
          path,
          recordId: job.recordIds[index] as string,
          value: values[index] as Uint8Array,
        }));
        const sealed = await sealEngineFields(transformer, job.resource, items, recordId);
        const answer = { texts: sealed.map((done) => done.text), ...writersOf(sealed) };
        return { value: answer, transfer: buffersOf(answer.writerOf) };
      } finally {
        // This thread's copy of the plaintexts.
        wipe(job.values.bytes);
      }
    }
    const items = job.paths.map((path, index) => ({
      path,
      recordId: job.recordIds[index] as string,
      value: job.texts[index] as string,
      where: job.wheres[index] as string,
    }));
    const opened = await openEngineFields(transformer, job.resource, items, recordId);
    const plaintexts = pack(opened.map((done) => done.bytes));
    wipe(...opened.map((done) => done.bytes));
    const stale = Uint8Array.from(opened, (done) => (done.stale ? 1 : 0));
    const answer = { plaintexts, stale, ...writersOf(opened) };
    return {
      value: answer,
      transfer: buffersOf(plaintexts.bytes, plaintexts.ends, stale, answer.writerOf),
    };
  } catch (error) {
    if (error instanceof KmsEnvelopeError)
      return { value: { refusal: { code: error.code, message: error.message } } };
    return {
      value: { failure: error instanceof Error ? (error.stack ?? error.message) : String(error) },
    };
  }
}

serveWorker<never, EngineJob, EngineAnswer>({
  run,
  close() {
    engine.close();
  },
});
