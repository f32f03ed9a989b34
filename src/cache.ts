import { LRUCache } from 'lru-cache';
import { type Clock, systemClock } from './clock.js';

/**
 * The one bounded cache: lru-cache with a size bound and a TTL, read on `clock`
 * (so tests move its time). Entries are dropped lazily on read and
 * least-recently-used first when `max` is reached. `ttlMs: 0`: no expiry, the size bound only.
 */
export function boundedCache<K extends {}, V extends {}>(opts: {
  readonly max: number;
  readonly ttlMs: number;
  readonly clock?: Clock;
}): LRUCache<K, V> {
  const clock = opts.clock ?? systemClock;
  return new LRUCache<K, V>({
    max: opts.max,
    ttl: opts.ttlMs,
    // Read the clock on every check (no cached "now" kept alive by a timer).
    ttlResolution: 0,
    perf: { now: () => clock.now() },
  });
}
