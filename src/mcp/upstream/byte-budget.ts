import { GatewayError } from '../../errors.js';

/**
 * The bytes of unfinished answers one upstream may have gitgate hold at once
 * (`maxInFlightBytes`): JSON bodies being read, SSE events and stdio lines being assembled.
 * A reservation that would go past it fails at once with UPSTREAM_TOO_LARGE,
 * so concurrent large answers cannot together exhaust memory.
 */
export class ByteBudget {
  #held = 0;

  constructor(
    readonly limit: number,
    private readonly upstream: string,
  ) {}

  get held(): number {
    return this.#held;
  }

  /** Hold `n` more bytes, or throw UPSTREAM_TOO_LARGE (nothing is held then). */
  reserve(n: number): void {
    if (this.#held + n > this.limit) {
      throw new GatewayError(
        'UPSTREAM_TOO_LARGE',
        `upstream ${this.upstream} has more than ${this.limit} bytes of answers in flight (maxInFlightBytes)`,
      );
    }
    this.#held += n;
  }

  release(n: number): void {
    this.#held = Math.max(0, this.#held - n);
  }
}
