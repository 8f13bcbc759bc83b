import type { ErrorCode } from "../errors.js";
import type { FieldMethod } from "./field-batch.js";

/** Copies of the master-key versions, primary first; the worker owns and wipes them. */
export interface FieldWorkerKeys {
  keys: { provider: string; key: Uint8Array }[];
  retiredKeyIds: string[];
}

/** One field-service call, or one part of it: the serialized request. */
export interface FieldJob {
  method: FieldMethod;
  message: Uint8Array;
  /** Position of the message's first record in the whole call, for errors that name one. */
  firstRecord: number;
}

/** A job's answer: the serialized response, or the failure a KmsEnvelopeError described. */
export interface FieldAnswer {
  uid: string | undefined;
  /** Fields the request carried, once counted (also when sealing or opening then failed). */
  fields: number;
  /** The Open answer said some value is under an older master-key version. */
  stale?: boolean;
  response?: Uint8Array;
  /** A deliberate refusal, rebuilt as a KmsEnvelopeError on the main thread. */
  refusal?: { code: ErrorCode; message: string };
  /** A bug: the message and stack go to the log, the caller gets INTERNAL. */
  failure?: string;
}
