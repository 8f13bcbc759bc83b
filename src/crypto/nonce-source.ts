import { randomFillSync } from "node:crypto";

const NONCE_BYTES = 24;
// One CSPRNG call fills 512 nonces: randomBytes costs ~3 µs per call on this class of machine,
// a tenth of a whole KMS call, and the pool changes nothing about where the bytes come from.
const POOL_NONCES = 512;

let pool = Buffer.alloc(0);
let offset = 0;
let poolOwner = -1;

/**
 * 24 fresh bytes from node:crypto's CSPRNG (SPEC.md §2), handed out of a pool that is refilled,
 * never reused. The pool is discarded when the process id changes, so a forked child can never
 * hand out a nonce its parent already used.
 */
export function freshNonce(): Uint8Array {
  if (offset + NONCE_BYTES > pool.length || poolOwner !== process.pid) {
    pool = randomFillSync(Buffer.allocUnsafeSlow(NONCE_BYTES * POOL_NONCES));
    offset = 0;
    poolOwner = process.pid;
  }
  const nonce = pool.subarray(offset, offset + NONCE_BYTES);
  offset += NONCE_BYTES;
  return nonce;
}
