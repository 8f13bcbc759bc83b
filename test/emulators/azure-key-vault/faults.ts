import { VaultError } from "./errors.js";
import type { PayloadOperation } from "./key-store.js";

/** Every operation the emulator routes: the key GET plus the payload operations. */
export type VaultOperation = "get" | PayloadOperation;

/** Restricts a fault to one operation; without it the fault hits the next requests of any kind. */
export interface FaultTarget {
  operation?: VaultOperation;
}

/** How the next unwrap or decrypt result is damaged: one byte flipped, one dropped or added. */
export type CorruptionMode = "flip" | "truncate" | "extend";

interface CountedFault {
  remaining: number;
  operation: VaultOperation | undefined;
  error: () => VaultError;
}

const MAX_DELAY_MS = 60_000;
const MAX_COUNT = 1_000;

/**
 * Scripted failures for authenticated requests, consumed in a fixed order per request:
 * delay, then access denial, then throttling, then server errors. The challenge round trip
 * (unauthenticated) is never faulted, so the bearer flow stays deterministic.
 */
export class Faults {
  readonly #counted: CountedFault[] = [];
  #denied: { operation: VaultOperation | undefined } | undefined;
  #delay: { ms: number; remaining: number; operation: VaultOperation | undefined } | undefined;
  #corruption: CorruptionMode | undefined;

  /** Answers the next `count` matching requests with 429 Throttled and `Retry-After`. */
  throttle(count: number, options: FaultTarget & { retryAfterSeconds?: number } = {}): void {
    const retryAfter = String(options.retryAfterSeconds ?? 0);
    this.#add(count, options.operation, () => {
      return new VaultError(
        429,
        "Throttled",
        "Request was not processed because too many requests were received. Reason: VaultRequestTypeLimitReached",
        {
          headers: { "Retry-After": retryAfter },
        },
      );
    });
  }

  /** Answers the next `count` matching requests with a 500 or 503 (optionally with Retry-After). */
  fail(
    count: number,
    status: 500 | 503,
    options: FaultTarget & { retryAfterSeconds?: number } = {},
  ): void {
    const headers: Record<string, string> =
      options.retryAfterSeconds === undefined
        ? {}
        : { "Retry-After": String(options.retryAfterSeconds) };
    const code = status === 500 ? "InternalServerError" : "ServiceUnavailable";
    this.#add(
      count,
      options.operation,
      () => new VaultError(status, code, `Emulated ${code}.`, { headers }),
    );
  }

  /** Refuses matching requests with 403 Forbidden (RBAC denial) until `allowAccess`. */
  denyAccess(options: FaultTarget = {}): void {
    this.#denied = { operation: options.operation };
  }

  /** Lifts `denyAccess`. */
  allowAccess(): void {
    this.#denied = undefined;
  }

  /** Holds matching responses for `ms` (the next `count` of them, or all when omitted). */
  delay(ms: number, options: FaultTarget & { count?: number } = {}): void {
    if (!(ms >= 0 && ms <= MAX_DELAY_MS)) throw new Error(`delay must be 0..${MAX_DELAY_MS} ms`);
    this.#delay = {
      ms,
      remaining: options.count ?? Number.POSITIVE_INFINITY,
      operation: options.operation,
    };
  }

  /** Damages the next successful unwrap or decrypt result. */
  corruptNextUnwrap(mode: CorruptionMode = "truncate"): void {
    this.#corruption = mode;
  }

  /** Drops every scripted fault. */
  reset(): void {
    this.#counted.length = 0;
    this.#denied = undefined;
    this.#delay = undefined;
    this.#corruption = undefined;
  }

  /** How long to hold the response to this request. */
  takeDelay(operation: VaultOperation): number {
    const delay = this.#delay;
    if (delay === undefined || !matches(delay.operation, operation)) return 0;
    delay.remaining -= 1;
    if (delay.remaining <= 0) this.#delay = undefined;
    return delay.ms;
  }

  /** The scripted error for this request, if any. */
  takeError(operation: VaultOperation): VaultError | undefined {
    if (this.#denied !== undefined && matches(this.#denied.operation, operation)) {
      return new VaultError(
        403,
        "Forbidden",
        `Caller is not authorized to perform action on resource. If role assignments, deny assignments or role definitions were changed recently, please observe propagation time. Action: 'Microsoft.KeyVault/vaults/keys/${operation === "get" ? "read" : `${operation.replace("key", "")}/action`}'`,
        { innerCode: "ForbiddenByRbac" },
      );
    }
    const index = this.#counted.findIndex((fault) => matches(fault.operation, operation));
    const fault = this.#counted[index];
    if (fault === undefined) return undefined;
    fault.remaining -= 1;
    if (fault.remaining <= 0) this.#counted.splice(index, 1);
    return fault.error();
  }

  /** Applies (and clears) a pending corruption to an unwrap or decrypt result. */
  corrupt(operation: VaultOperation, result: Buffer): Buffer {
    const mode = this.#corruption;
    if (mode === undefined || (operation !== "unwrapkey" && operation !== "decrypt")) return result;
    this.#corruption = undefined;
    if (mode === "truncate") return result.subarray(0, result.length - 1);
    if (mode === "extend") return Buffer.concat([result, Buffer.from([0])]);
    const flipped = Buffer.from(result);
    flipped[0] = (flipped[0] as number) ^ 0x01;
    return flipped;
  }

  #add(count: number, operation: VaultOperation | undefined, error: () => VaultError): void {
    if (!(Number.isInteger(count) && count > 0 && count <= MAX_COUNT)) {
      throw new Error(`count must be 1..${MAX_COUNT}`);
    }
    this.#counted.push({ remaining: count, operation, error });
  }
}

function matches(target: VaultOperation | undefined, operation: VaultOperation): boolean {
  return target === undefined || target === operation;
}
