import { createHash } from 'node:crypto';
import { type Clock, systemClock } from '../clock.js';
import type { Rate } from '../policy/decision.js';
import { type Rates, rateLimited } from '../policy/rate-limit.js';
import type { PgStore } from './postgres.js';

const REFILL = `CASE WHEN b.calls <> EXCLUDED.calls OR b.window_ms <> EXCLUDED.window_ms THEN EXCLUDED.calls::double precision
  ELSE LEAST(EXCLUDED.calls::double precision,
             b.tokens + GREATEST(0, EXCLUDED.at_ms - b.at_ms) * EXCLUDED.calls::double precision / EXCLUDED.window_ms) END`;

/**
 * The decision's `rate` buckets shared by every replica: one token bucket per key in PostgreSQL, refilled and
 * taken in one statement under the row's lock, so replicas together grant what one process would. The error
 * is bounded by the replicas' clock skew: a replica whose clock runs `s` ms ahead refills at most
 * `calls * s / window` tokens early (a bucket's time never runs backwards: it keeps the latest instant seen).
 * A store that cannot be reached grants nothing (STORE_UNAVAILABLE): a rated call is never forwarded uncounted.
 * Keys are stored hashed (they name callers).
 */
export class PgRateLimiter implements Rates {
  #takes = 0;

  constructor(
    private readonly db: PgStore,
    private readonly clock: Clock = systemClock,
  ) {}

  async take(key: string, rate: Rate, now = this.clock.now()): Promise<void> {
    const r = await this.db.query<{ tokens: number; granted: boolean }>(
      `INSERT INTO rate_buckets AS b (key, tokens, at_ms, calls, window_ms, granted)
       VALUES ($1, $2::double precision - 1, $3, $2, $4, $2 >= 1)
       ON CONFLICT (key) DO UPDATE SET
         tokens = (${REFILL}) - CASE WHEN (${REFILL}) >= 1 THEN 1 ELSE 0 END,
         granted = (${REFILL}) >= 1,
         at_ms = GREATEST(b.at_ms, EXCLUDED.at_ms),
         calls = EXCLUDED.calls,
         window_ms = EXCLUDED.window_ms
       RETURNING tokens, granted`,
      [createHash('sha256').update(key).digest('hex'), rate.calls, now, rate.window_seconds * 1000],
    );
    if (++this.#takes % 1000 === 0)
      void this.db.query('DELETE FROM rate_buckets WHERE at_ms < $1 - window_ms', [now]).catch(() => undefined);
    const row = r.rows[0];
    if (row === undefined || row.granted !== true) throw rateLimited(rate, row?.tokens ?? 0);
  }

  close(): void {}
}
