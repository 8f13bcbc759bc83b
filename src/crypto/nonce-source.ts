import { randomFillSync } from "node:crypto";

const NONCE_BYTES = 24;
// One CSPRNG call fills a pool of 12 KiB: randomFillSync costs ~3 µs per call on this class of
// machine, a tenth of a whole KMS call, and the pool changes nothing about where bytes come from.
const POOL_BYTES = NONCE_BYTES * 512;

let pool = Buffer.alloc(0);
let offset = 0;
let poolOwner = -1;

/**
 * `length` fresh bytes (at most 1 KiB) from node:crypto's CSPRNG (SPEC.md §2), handed out of a
 * pool that is refilled, never reused. The pool is discarded when the process id changes, so a
 * forked child can never hand out bytes its parent already used. For nonces, IVs and HKDF
 * infos: public values that must never repeat, not keys.
 */
export function freshRandom(length: number): Uint8Array {
  if (length > 1024) throw new RangeError("freshRandom serves at most 1 KiB; use randomBytes");
  const at = take(length);
  return pool.subarray(at, at + length);
}

/**
 * Fills `out` (at most 1 KiB) with fresh bytes from the same pool, copied rather than viewed:
 * for hot paths that reuse one buffer instead of making a view per call.
 */
export function fillFresh(out: Uint8Array): void {
  if (out.length > 1024) throw new RangeError("fillFresh serves at most 1 KiB; use randomFillSync");
  const at = take(out.length);
  for (let index = 0; index < out.length; index++) out[index] = pool[at + index] as number;
}

/** Where `length` unused bytes start in the pool, refilled when they are not there. */
function take(length: number): number {
  if (offset + length > pool.length || poolOwner !== process.pid) {
    pool = randomFillSync(Buffer.allocUnsafeSlow(POOL_BYTES));
    offset = 0;
    poolOwner = process.pid;
  }
  const at = offset;
  offset += length;
  return at;
}

/** A 24-byte secretbox nonce. */
export function freshNonce(): Uint8Array {
  return freshRandom(NONCE_BYTES);
}
