import { type Clock, systemClock, type Timer } from '../clock.js';
import { GatewayError } from '../errors.js';
import type { Rate } from './decision.js';

interface Bucket {
  tokens: number;
  at: number;
  rate: Rate;
}

/** Where the `rate` buckets live: in this process (RateLimiter), or shared by replicas (src/store/rate-limit.ts). */
export interface Rates {
  /** Take one token or throw RATE_LIMITED with Retry-After. */
  take(key: string, rate: Rate, now?: number): void | Promise<void>;
  close(): void;
}

/** The client's error for a used-up rate: `tokens` left (below 1). */
export function rateLimited(rate: Rate, tokens: number): GatewayError {
  const perMs = rate.calls / (rate.window_seconds * 1000);
  const retry = Math.max(1, Math.ceil((1 - tokens) / perMs / 1000));
  return new GatewayError(
    'RATE_LIMITED',
    `Rate limited: at most ${rate.calls} call(s) per ${rate.window_seconds} s; retry in ${retry} s`,
    {
      headers: { 'retry-after': String(retry) },
      data: { retry_after_seconds: retry, limit: rate.calls, window_seconds: rate.window_seconds },
    },
  );
}

/**
 * Token buckets for the `rate` a decision carries: each key holds up to
 * `calls` tokens and regains them over `window_seconds`. Idle buckets are swept.
 */
export class RateLimiter implements Rates {
  readonly #buckets = new Map<string, Bucket>();
  readonly #sweeper: Timer;

  constructor(private readonly clock: Clock = systemClock) {
    this.#sweeper = clock.every(60_000, () => this.sweep());
  }

  /** Take one token or throw RATE_LIMITED with Retry-After. */
  take(key: string, rate: Rate, now = this.clock.now()): void {
    const perMs = rate.calls / (rate.window_seconds * 1000);
    let b = this.#buckets.get(key);
    if (b === undefined || b.rate.calls !== rate.calls || b.rate.window_seconds !== rate.window_seconds) {
      b = { tokens: rate.calls, at: now, rate };
      this.#buckets.set(key, b);
    } else {
      b.tokens = Math.min(rate.calls, b.tokens + (now - b.at) * perMs);
      b.at = now;
    }
    if (b.tokens < 1) throw rateLimited(rate, b.tokens);
    b.tokens -= 1;
  }

  sweep(now = this.clock.now()): void {
    for (const [k, b] of this.#buckets) if (now - b.at > b.rate.window_seconds * 1000) this.#buckets.delete(k);
  }

  close(): void {
    this.#sweeper.cancel();
  }
}
