import { InvalidRequestError, KmsEnvelopeError } from "../errors.js";
import { FRAME_HEADER_BYTES } from "./grpc-framing.js";
import type { MemoryBudget } from "./memory-budget.js";

/** Requests up to this size are "small": KMS calls, which may use the budget's reserve. */
const SMALL_CALL_BYTES = 64 * 1024;
// A large declared length is not trusted: the buffer grows as bytes really arrive, so a peer
// that declares 4 MiB and sends 5 bytes holds 64 KiB, not 4 MiB.
const FIRST_CAPACITY = 64 * 1024;

/** What the call's request may use: its size cap and the budgets it draws on. */
export interface RequestBodyLimits {
  /** Largest message accepted (--max-request-bytes). */
  readonly maxMessageBytes: number;
  /** The connection's budget, which draws on the daemon's. */
  readonly budget: MemoryBudget;
}

/**
 * The one length-prefixed message of a unary request, accumulated into a single buffer sized
 * from its gRPC prefix as DATA frames arrive: no per-frame objects are kept, however small
 * the frames (gRPC over HTTP/2, "Length-Prefixed-Message"). Every byte held is counted in the
 * budget until `release()`. A body that breaks a rule is refused at the byte that breaks it.
 */
export class RequestBody {
  readonly #limits: RequestBodyLimits;
  // Only a prefix split over DATA frames needs a buffer of its own; the usual whole one is read
  // where it arrived.
  #header: Buffer | undefined;
  #headerFilled = 0;
  #declared = -1;
  #message: Buffer | undefined;
  #filled = 0;
  #reserved = 0;

  constructor(limits: RequestBodyLimits) {
    this.#limits = limits;
  }

  /** Bytes of the budget this body holds. */
  get reservedBytes(): number {
    return this.#reserved;
  }

  /** Takes one DATA chunk; throws a KmsEnvelopeError when the body can no longer be valid. */
  append(chunk: Buffer): void {
    let offset = 0;
    if (this.#headerFilled === 0 && chunk.length >= FRAME_HEADER_BYTES) {
      offset = FRAME_HEADER_BYTES;
      this.#headerFilled = FRAME_HEADER_BYTES;
      this.#startMessage(chunk);
    } else if (this.#headerFilled < FRAME_HEADER_BYTES) {
      this.#header ??= Buffer.alloc(FRAME_HEADER_BYTES);
      offset = Math.min(FRAME_HEADER_BYTES - this.#headerFilled, chunk.length);
      chunk.copy(this.#header, this.#headerFilled, 0, offset);
      this.#headerFilled += offset;
      if (this.#headerFilled < FRAME_HEADER_BYTES) return;
      this.#startMessage(this.#header);
    }
    const rest = chunk.length - offset;
    if (rest === 0) return;
    if (this.#filled + rest > this.#declared) {
      throw new InvalidRequestError("the request body is not exactly one length-prefixed message");
    }
    this.#ensureCapacity(this.#filled + rest);
    chunk.copy(this.#message as Buffer, this.#filled, offset);
    this.#filled += rest;
  }

  /** The complete message once the client has ended its side; throws when it is incomplete. */
  finish(): Buffer {
    if (this.#headerFilled < FRAME_HEADER_BYTES) {
      throw new InvalidRequestError("the request carries no message: send exactly one");
    }
    if (this.#filled !== this.#declared) {
      throw new InvalidRequestError("the request body is not exactly one length-prefixed message");
    }
    const message = this.#message as Buffer;
    // Sized from the prefix, the buffer usually holds exactly the message: no view needed.
    return message.length === this.#filled ? message : message.subarray(0, this.#filled);
  }

  /**
   * Zeroes the bytes (a request can carry a DEK seed or field plaintexts, and decoded bytes
   * fields are views of this buffer), gives the budget back and drops the buffer; safe to call
   * more than once.
   */
  release(): void {
    this.#message?.fill(0, 0, this.#filled);
    if (this.#reserved > 0) this.#limits.budget.release(this.#reserved);
    this.#reserved = 0;
    this.#message = undefined;
  }

  /** Reads the length prefix at the start of `header`. */
  #startMessage(header: Buffer): void {
    // Compression is refused rather than implemented: we never advertise it, and
    // kube-apiserver never sends it.
    if (header[0] !== 0) {
      throw new KmsEnvelopeError(
        "UNSUPPORTED_ENCODING",
        "compressed messages are not supported: send grpc-encoding identity",
      );
    }
    this.#declared = header.readUInt32BE(1);
    if (this.#declared > this.#limits.maxMessageBytes) {
      throw new KmsEnvelopeError(
        "REQUEST_TOO_LARGE",
        `request larger than the ${this.#limits.maxMessageBytes} bytes allowed (--max-request-bytes)`,
      );
    }
    this.#ensureCapacity(Math.min(this.#declared, FIRST_CAPACITY));
  }

  #ensureCapacity(needed: number): void {
    const current = this.#message?.length ?? 0;
    if (needed <= current && this.#message !== undefined) return;
    const capacity = Math.min(this.#declared, Math.max(needed, current * 2, FIRST_CAPACITY));
    const extra = capacity - this.#reserved;
    if (!this.#limits.budget.tryReserve(extra, this.#declared <= SMALL_CALL_BYTES)) {
      throw new KmsEnvelopeError(
        "OVERLOADED",
        "the daemon is holding as many request bytes as it allows (--max-connection-buffer-bytes, --max-buffer-bytes): retry later or send smaller batches",
      );
    }
    this.#reserved = capacity;
    const grown = Buffer.allocUnsafe(capacity);
    this.#message?.copy(grown, 0, 0, this.#filled);
    this.#message = grown;
  }
}
