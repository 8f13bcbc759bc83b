import type { ErrorCode } from "../errors.js";
import type { FieldMethod } from "./field-batch.js";

/** Copies of the master-key versions, primary first; the worker owns and wipes them. */
interface KeysMessage {
  kind: "keys";
  keys: { provider: string; key: Uint8Array }[];
  retiredKeyIds: string[];
}

/** One field-service call: the serialized request, moved (transferred) to the worker. */
export interface JobMessage {
  kind: "job";
  id: number;
  method: FieldMethod;
  message: Uint8Array;
}

/** Asks the worker to wipe its keys and stop. */
interface CloseMessage {
  kind: "close";
}

/** What the daemon's main thread sends a field worker. */
export type ToWorker = KeysMessage | JobMessage | CloseMessage;

/** A job's answer: the serialized response, or the failure a KmsEnvelopeError described. */
export interface DoneMessage {
  kind: "done";
  id: number;
  uid: string | undefined;
  fields: number;
  /** The Open answer said some value is under an older master-key version. */
  stale?: boolean;
  response?: Uint8Array;
  /** A deliberate refusal, rebuilt as a KmsEnvelopeError on the main thread. */
  refusal?: { code: ErrorCode; message: string };
  /** A bug: the message and stack go to the log, the caller gets INTERNAL. */
  failure?: string;
}

/** What a field worker sends back: `ready` once libsodium is loaded, then one `done` per job. */
export type FromWorker = { kind: "ready" } | DoneMessage;
