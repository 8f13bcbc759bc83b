// Seal and Open requests cut by records into parts for several workers, and the parts' answers
// joined back, without decoding a record on the event loop: only the top-level protobuf
// fields are walked (records are field 1 of SealRequest, OpenRequest and both responses).

import { MalformedProtobufError, ProtobufReader } from "../wire/protobuf-wire.js";

const RECORDS = 1;

/** One top-level field of a protobuf message: its number and the bytes of the whole entry. */
interface Entry {
  readonly field: number;
  readonly wire: number;
  readonly start: number;
  readonly end: number;
}

/** The message's top-level entries in order; undefined when it is not well-formed protobuf. */
function entries(bytes: Uint8Array): Entry[] | undefined {
  const found: Entry[] = [];
  const reader = new ProtobufReader(bytes);
  try {
    while (!reader.done) {
      const start = reader.offset;
      const tag = reader.tag();
      reader.skip(tag & 7);
      found.push({ field: tag >>> 3, wire: tag & 7, start, end: reader.offset });
    }
  } catch (error) {
    if (error instanceof MalformedProtobufError) return undefined;
    throw error;
  }
  return found;
}

/** The pieces, in order, in a buffer of its own (so it can be moved to a worker, not copied). */
function concat(pieces: readonly (readonly [Uint8Array, Entry])[]): Uint8Array {
  let size = 0;
  for (const [, entry] of pieces) size += entry.end - entry.start;
  const joined = new Uint8Array(new ArrayBuffer(size));
  let at = 0;
  for (const [bytes, entry] of pieces) {
    joined.set(bytes.subarray(entry.start, entry.end), at);
    at += entry.end - entry.start;
  }
  return joined;
}

/** One part of a request: a message of the same type holding a run of its records. */
interface RequestPart {
  readonly message: Uint8Array;
  /** Position of the part's first record in the whole request, for errors that name one. */
  readonly firstRecord: number;
}

/**
 * Cuts a Seal or Open request into at most `parts` requests of consecutive records, each with
 * the request's other fields (uid), balanced by bytes. Undefined when there is nothing to cut
 * (fewer than two records, more than `maxRecords`) or the message is malformed: the whole
 * request then goes to one worker, which answers exactly as it always did.
 */
export function splitRequest(
  message: Uint8Array,
  parts: number,
  maxRecords: number,
): RequestPart[] | undefined {
  const found = entries(message);
  if (found === undefined) return undefined;
  const records = found.filter((entry) => entry.field === RECORDS);
  const others = found.filter((entry) => entry.field !== RECORDS);
  // A record that is not length-delimited is malformed; the worker names it as one.
  if (records.some((entry) => entry.wire !== 2)) return undefined;
  const count = Math.min(parts, records.length);
  if (count < 2 || records.length > maxRecords) return undefined;
  // ends[i]: bytes of records[0..i], so a part ends where the bytes reach its share.
  const ends: number[] = [];
  let sum = 0;
  for (const entry of records) {
    sum += entry.end - entry.start;
    ends.push(sum);
  }
  const cut: RequestPart[] = [];
  let first = 0;
  for (let part = 1; part <= count; part++) {
    const target = (sum * part) / count;
    // Leave at least one record for each part still to come.
    const limit = records.length - (count - part);
    let last = first + 1;
    while (last < limit && (ends[last - 1] as number) < target) last++;
    const pieces = [...records.slice(first, last), ...others].map(
      (entry) => [message, entry] as const,
    );
    cut.push({ message: concat(pieces), firstRecord: first });
    first = last;
  }
  return cut;
}

/** A part's answer: the serialized response and (Open) whether it found a stale value. */
interface ResponsePart {
  readonly response: Uint8Array;
  readonly stale?: boolean;
}

/**
 * The answer the whole request would have had: every part's records in order, then the
 * response's other fields (key_id, and stale when any part was stale), as one encoder writes
 * them. The parts were sent together after the same key set, so their key ids agree.
 */
export function joinResponses(parts: readonly ResponsePart[]): Uint8Array {
  const walked = parts.map((part) => {
    const found = entries(part.response);
    if (found === undefined) throw new Error("a field worker answered with malformed protobuf");
    return { part, found };
  });
  const tailFrom = walked.find(({ part }) => part.stale === true) ?? walked[0];
  if (tailFrom === undefined) return new Uint8Array(0);
  const pieces = walked.flatMap(({ part, found }) =>
    found
      .filter((entry) => entry.field === RECORDS)
      .map((entry) => [part.response, entry] as const),
  );
  for (const entry of tailFrom.found)
    if (entry.field !== RECORDS) pieces.push([tailFrom.part.response, entry] as const);
  return concat(pieces);
}
