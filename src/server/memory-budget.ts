/**
 * A byte budget shared by the calls that draw on it. A connection's budget draws on the
 * daemon's too, so one peer cannot hold more than its share and all peers together cannot hold
 * more than the daemon's limit, whatever they send (issue 11: memory bounded per connection
 * and for the whole daemon).
 */
export class MemoryBudget {
  readonly limit: number;
  readonly #parent: MemoryBudget | undefined;
  readonly #smallReserve: number;
  #used = 0;

  /**
   * `smallReserve` bytes of the limit are kept for calls no larger than the small-call size,
   * so bulk field-service batches can never use up the room kube-apiserver's small KMS calls
   * need.
   */
  constructor(limit: number, options: { parent?: MemoryBudget; smallReserve?: number } = {}) {
    this.limit = limit;
    this.#parent = options.parent;
    this.#smallReserve = Math.min(options.smallReserve ?? 0, limit);
  }

  /** Bytes currently held. */
  get used(): number {
    return this.#used;
  }

  /** Takes `bytes` when they fit here and in every parent; `small` calls may use the reserve. */
  tryReserve(bytes: number, small: boolean): boolean {
    const ceiling = small ? this.limit : this.limit - this.#smallReserve;
    if (this.#used + bytes > ceiling) return false;
    if (this.#parent !== undefined && !this.#parent.tryReserve(bytes, small)) return false;
    this.#used += bytes;
    return true;
  }

  /**
   * Counts bytes that are already allocated and cannot be refused (a response computed for a
   * call that was admitted), so the calls that follow see the true total.
   */
  forceReserve(bytes: number): void {
    this.#parent?.forceReserve(bytes);
    this.#used += bytes;
  }

  /** Returns bytes taken by tryReserve or forceReserve. */
  release(bytes: number): void {
    this.#parent?.release(bytes);
    this.#used -= bytes;
  }
}
