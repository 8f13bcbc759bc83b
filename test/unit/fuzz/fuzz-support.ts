import assert from "node:assert/strict";
import fc from "fast-check";
import { type ErrorCode, KmsEnvelopeError } from "../../../src/errors.js";

/**
 * Shared configuration and generators of the property tests in this directory.
 *
 * The seed is fixed so that `npm test` is deterministic and a failure seen in CI is the one a
 * developer reproduces; fast-check prints the seed and the shrunk counterexample on failure.
 * FUZZ_SEED and FUZZ_RUNS_SCALE widen a local hunt (`FUZZ_SEED=$RANDOM FUZZ_RUNS_SCALE=50`)
 * without editing the tests.
 */
const seed = Number(process.env.FUZZ_SEED ?? 0x6b6d7365);
const scale = Number(process.env.FUZZ_RUNS_SCALE ?? 1);
// includeErrorInReport: node's test reporter does not print the cause fast-check attaches.
fc.configureGlobal({ seed, includeErrorInReport: true });

/** Runs of one property, sized so the whole directory stays well under 30 s on two cores. */
export function runs(count: number): { numRuns: number } {
  return { numRuns: Math.max(1, Math.round(count * scale)) };
}

/** What a call did: returned a value, or threw a typed KmsEnvelopeError. */
export type Outcome<T> = { ok: true; value: T } | { ok: false; error: KmsEnvelopeError };

function typed(error: unknown, codes: readonly ErrorCode[] | undefined): KmsEnvelopeError {
  // Rethrown untouched so fast-check reports the real stack of an untyped failure.
  if (!(error instanceof KmsEnvelopeError)) throw error;
  if (codes !== undefined && !codes.includes(error.code)) {
    assert.fail(`expected one of ${codes.join(", ")}, got ${error.code}: ${error.message}`);
  }
  return error;
}

/** Calls `action`; a throw must be a KmsEnvelopeError (with one of `codes`, when given). */
export function outcome<T>(action: () => T, codes?: readonly ErrorCode[]): Outcome<T> {
  try {
    return { ok: true, value: action() };
  } catch (error) {
    return { ok: false, error: typed(error, codes) };
  }
}

/** outcome() for promises, and for handlers that may or may not return one. */
export async function settle<T>(
  action: () => T | Promise<T>,
  codes?: readonly ErrorCode[],
): Promise<Outcome<T>> {
  try {
    return { ok: true, value: await action() };
  } catch (error) {
    return { ok: false, error: typed(error, codes) };
  }
}

function concat(...parts: Uint8Array[]): Uint8Array {
  return Uint8Array.from(Buffer.concat(parts));
}

/**
 * A mutation, independent of the value it is applied to (positions wrap around its length),
 * so values produced asynchronously can be mutated too: a flipped bit, a replaced byte, a
 * truncation, an extension, or a splice (a range replaced by other bytes). Each keeps most of
 * the value intact, which is what gets past a parser's first checks and into its later ones.
 */
export type Mutation =
  | { kind: "flip"; at: number; bit: number }
  | { kind: "replace"; at: number; delta: number }
  | { kind: "truncate"; at: number }
  | { kind: "extend"; bytes: Uint8Array }
  | { kind: "splice"; at: number; length: number; bytes: Uint8Array };

const position = fc.nat(0xffff);

export const mutations: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant("flip"), at: position, bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({
    kind: fc.constant("replace"),
    at: position,
    delta: fc.integer({ min: 1, max: 255 }),
  }),
  fc.record({ kind: fc.constant("truncate"), at: position }),
  fc.record({ kind: fc.constant("extend"), bytes: fc.uint8Array({ minLength: 1, maxLength: 48 }) }),
  fc.record({
    kind: fc.constant("splice"),
    at: position,
    length: fc.nat(64),
    bytes: fc.uint8Array({ maxLength: 48 }),
  }),
);

/** `valid` with `mutation` applied; the input is not changed. */
export function mutate(valid: Uint8Array, mutation: Mutation): Uint8Array {
  const at = valid.length === 0 ? 0 : ("at" in mutation ? mutation.at : 0) % valid.length;
  const copy = Uint8Array.from(valid);
  switch (mutation.kind) {
    case "flip":
      if (copy.length > 0) copy[at] = (copy[at] as number) ^ (1 << mutation.bit);
      return copy;
    case "replace":
      if (copy.length > 0) copy[at] = ((copy[at] as number) + mutation.delta) & 0xff;
      return copy;
    case "truncate":
      return copy.slice(0, at);
    case "extend":
      return concat(valid, mutation.bytes);
    case "splice":
      return concat(
        valid.subarray(0, at),
        mutation.bytes,
        valid.subarray(Math.min(valid.length, at + mutation.length)),
      );
  }
}

/** One mutation of `valid`. */
export function mutationOf(valid: Uint8Array): fc.Arbitrary<Uint8Array> {
  return mutations.map((mutation) => mutate(valid, mutation));
}

/**
 * Characters that near-valid text gets wrong: padding and separators, whitespace (also
 * Unicode's), the URL-safe base64 alphabet, look-alikes, a lone surrogate and NUL.
 */
export const AWKWARD_CHARACTERS = [
  "=",
  ":",
  "/",
  "+",
  "-",
  "_",
  ".",
  " ",
  "\t",
  "\n",
  "\r",
  "\u00a0",
  "\u2028",
  "\ufeff",
  "\u0000",
  "\ud800",
  "é",
  "\u0410",
  "𝔸",
  "%",
  "#",
  "?",
  "@",
  "\\",
] as const;

/** Names that JavaScript objects treat specially: keys a parser must not look up naively. */
export const PROTOTYPE_NAMES = [
  "__proto__",
  "constructor",
  "prototype",
  "toString",
  "valueOf",
  "hasOwnProperty",
  "__defineGetter__",
] as const;

/** One mutation of `valid` text, at the level of characters. */
export function textMutationOf(valid: string): fc.Arbitrary<string> {
  const chars = [...valid];
  const at = fc.nat(chars.length);
  const awkward = fc.oneof(fc.constantFrom(...AWKWARD_CHARACTERS), fc.string({ maxLength: 3 }));
  const join = (parts: string[]): string => parts.join("");
  return fc.oneof(
    fc.tuple(at, awkward).map(([i, c]) => join([...chars.slice(0, i), c, ...chars.slice(i)])),
    fc.tuple(at, awkward).map(([i, c]) => join([...chars.slice(0, i), c, ...chars.slice(i + 1)])),
    fc
      .tuple(at, fc.nat(Math.max(1, chars.length)))
      .map(([i, n]) => join([...chars.slice(0, i), ...chars.slice(i + n)])),
    at.map((i) => join(chars.slice(0, i))),
    at.map((i) => {
      const c = chars[i] ?? "";
      const swapped = c === c.toLowerCase() ? c.toUpperCase() : c.toLowerCase();
      return join([...chars.slice(0, i), swapped, ...chars.slice(i + 1)]);
    }),
  );
}

function varint(value: bigint): number[] {
  const out: number[] = [];
  let rest = value;
  do {
    const low = Number(rest & 0x7fn);
    rest >>= 7n;
    out.push(rest === 0n ? low : low | 0x80);
  } while (rest !== 0n);
  return out;
}

const fieldNumbers = fc.oneof(
  fc.integer({ min: 1, max: 5 }),
  fc.integer({ min: 0, max: 2 ** 29 - 1 }),
);

const tag = (field: number, wireType: number): number[] =>
  varint((BigInt(field) << 3n) | BigInt(wireType));

/**
 * Protobuf wire-format messages: the fields every request declares (numbers 1 to 5) and
 * unknown ones, each with any wire type (right or wrong for its field), nested messages,
 * UTF-8 and invalid UTF-8 strings, lengths that overrun, deprecated group tags and the
 * reserved wire types 6 and 7. A decoder meets here what a hostile client can send.
 */
export const protobufMessage: fc.Arbitrary<Uint8Array> = fc.letrec<{
  message: Uint8Array;
  field: number[];
}>((tie) => ({
  message: fc
    .array(tie("field"), { maxLength: 6, depthIdentifier: "protobuf" })
    .map((fields) => Uint8Array.from(fields.flat())),
  field: fc.oneof(
    { depthSize: "small", depthIdentifier: "protobuf" },
    fc
      .tuple(fieldNumbers, fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }))
      .map(([field, value]) => [...tag(field, 0), ...varint(value)]),
    fc
      .tuple(
        fieldNumbers,
        fc.oneof(
          fc.uint8Array({ maxLength: 40 }),
          fc.string({ unit: "binary", maxLength: 20 }).map((text) => Buffer.from(text)),
          tie("message"),
        ),
      )
      .map(([field, body]) => [...tag(field, 2), ...varint(BigInt(body.length)), ...body]),
    fc
      .tuple(fieldNumbers, fc.integer({ min: 1, max: 1 << 20 }), fc.uint8Array({ maxLength: 8 }))
      .map(([field, overrun, body]) => [
        ...tag(field, 2),
        ...varint(BigInt(body.length + overrun)),
        ...body,
      ]),
    fc
      .tuple(fieldNumbers, fc.constantFrom(1, 5), fc.uint8Array({ minLength: 8, maxLength: 8 }))
      .map(([field, wireType, body]) => [
        ...tag(field, wireType),
        ...body.subarray(0, wireType === 1 ? 8 : 4),
      ]),
    fc
      .tuple(fieldNumbers, fc.constantFrom(3, 4, 6, 7), fc.uint8Array({ maxLength: 8 }))
      .map(([field, wireType, tail]) => [...tag(field, wireType), ...tail]),
  ),
})).message;

/**
 * YAML text nested up to 2,000 levels, in flow and block style. Deep enough to overflow a
 * recursive composer, which on Node 20 can abort the process on the next parse.
 */
const deeplyNestedYaml: fc.Arbitrary<string> = fc
  .tuple(
    // The composer overflows from about 800 levels; shallow documents must still be read.
    fc.oneof(fc.integer({ min: 1, max: 100 }), fc.integer({ min: 800, max: 2000 })),
    fc.constantFrom("list", "map", "block"),
  )
  .map(([depth, style]) => {
    if (style === "list") return `${"[".repeat(depth)}${"]".repeat(depth)}`;
    if (style === "map") return `${"{a: ".repeat(depth)}1${"}".repeat(depth)}`;
    return `${Array.from({ length: depth }, (_, i) => `${" ".repeat(i)}-`).join("\n")} x`;
  });

/**
 * Reads deeply nested documents twice each through `read` (which asserts its own outcome):
 * the second read is where a process damaged by the first would abort, as a reload does.
 */
export function readDeeplyNestedTwice(read: (text: string) => unknown): void {
  fc.assert(
    fc.property(deeplyNestedYaml, (text) => {
      read(text);
      read(text);
    }),
    runs(12),
  );
}
