import type { status } from "@grpc/grpc-js";

/** The KeyManagementService methods the emulator implements (the rest are UNIMPLEMENTED). */
export const KMS_METHODS = ["Encrypt", "Decrypt", "GetCryptoKey", "GetCryptoKeyVersion"] as const;

/** One implemented method. */
export type KmsMethod = (typeof KMS_METHODS)[number];

/**
 * How a call can be damaged in transit: a flipped ciphertext (Encrypt) or plaintext (Decrypt)
 * byte in the response whose CRC32C is left as it was, a verified_* flag the server dropped, or
 * a request byte flipped on its way in (so the server's own checksum verification fails).
 */
export type Corruption =
  | "ciphertext"
  | "plaintext"
  | "verifiedPlaintextCrc32c"
  | "verifiedAdditionalAuthenticatedDataCrc32c"
  | "requestPlaintext"
  | "requestCiphertext";

/** A scripted answer: fail with a status, or answer and then damage the response. */
export type Fault =
  | { kind: "status"; code: status; message: string }
  | { kind: "corrupt"; corruption: Corruption };

/** The method whose response a corruption applies to. */
export const CORRUPTION_METHOD: Record<Corruption, KmsMethod> = {
  ciphertext: "Encrypt",
  plaintext: "Decrypt",
  verifiedPlaintextCrc32c: "Encrypt",
  verifiedAdditionalAuthenticatedDataCrc32c: "Encrypt",
  requestPlaintext: "Encrypt",
  requestCiphertext: "Decrypt",
};

interface ScheduledFault {
  readonly fault: Fault;
  readonly methods: ReadonlySet<KmsMethod>;
  remaining: number;
}

/**
 * Faults queued for the next calls: each call takes the oldest fault scheduled for its method,
 * so "throttle the next 2, then corrupt one Encrypt" plays out in that order. A count of
 * Infinity makes a fault persistent until cleared.
 */
export class FaultPlan {
  readonly #scheduled: ScheduledFault[] = [];

  /** Schedules `fault` for the next `count` calls of `methods`. */
  add(fault: Fault, count: number, methods: readonly KmsMethod[]): void {
    if (!(count > 0)) throw new Error(`fault count must be positive, got ${count}`);
    this.#scheduled.push({ fault, methods: new Set(methods), remaining: count });
  }

  /** Takes the fault for one call of `method`, if any is scheduled. */
  take(method: KmsMethod): Fault | undefined {
    const index = this.#scheduled.findIndex((entry) => entry.methods.has(method));
    const entry = this.#scheduled[index];
    if (entry === undefined) return undefined;
    entry.remaining -= 1;
    if (entry.remaining <= 0) this.#scheduled.splice(index, 1);
    return entry.fault;
  }

  /** Drops every scheduled fault. */
  clear(): void {
    this.#scheduled.length = 0;
  }
}
