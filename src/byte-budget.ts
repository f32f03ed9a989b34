import { GatewayError } from './errors.js';

/**
 * Bytes gitgate holds at once for one purpose, within a limit: a reservation that would pass it is refused
 * at once (nothing is held then), so concurrent large payloads cannot together exhaust memory. Used for an
 * upstream's unfinished answers (`maxInFlightBytes`) and for the request bodies being read
 * (`server.maxBufferedBodyBytes`).
 */
export class ByteBudget {
  #held = 0;

  /** `refuse`: the error a reservation past the limit throws. */
  constructor(
    readonly limit: number,
    private readonly refuse: () => GatewayError,
  ) {}

  get held(): number {
    return this.#held;
  }

  /** Hold `n` more bytes when they fit; whether they did (nothing is held when not). */
  tryReserve(n: number): boolean {
    if (this.#held + n > this.limit) return false;
    this.#held += n;
    return true;
  }

  /** Hold `n` more bytes, or throw the budget's refusal (nothing is held then). */
  reserve(n: number): void {
    if (!this.tryReserve(n)) throw this.refuse();
  }

  release(n: number): void {
    this.#held = Math.max(0, this.#held - n);
  }
}

/** The bytes of unfinished answers (JSON bodies being read, SSE events and stdio lines being assembled) one upstream may have gitgate hold: UPSTREAM_TOO_LARGE past them. */
export function inFlightBudget(limit: number, upstream: string): ByteBudget {
  return new ByteBudget(
    limit,
    () =>
      new GatewayError(
        'UPSTREAM_TOO_LARGE',
        `upstream ${upstream} has more than ${limit} bytes of answers in flight (maxInFlightBytes)`,
      ),
  );
}
