import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { boundedCache } from '../../src/cache.js';
import { systemClock } from '../../src/clock.js';
import type { GatewayConfig } from '../../src/config/types.js';
import { Credentials } from '../../src/credentials/credentials.js';
import { KeyRing } from '../../src/credentials/keyring.js';
import { ToolCatalogs } from '../../src/mcp/tool-catalog.js';
import { PgKeys } from '../../src/store/keys.js';
import type { PgStore } from '../../src/store/postgres.js';
import { PgRateLimiter } from '../../src/store/rate-limit.js';
import { ManualClock } from '../helpers/clock.js';

describe('the one clock', () => {
  afterEach(() => vi.useRealTimers());

  it('ManualClock runs what falls due, in time order, intervals as often as they fall due, nothing cancelled', () => {
    const clock = new ManualClock(0);
    const ran: string[] = [];
    clock.after(30, () => ran.push(`a@${clock.now()}`));
    const tick = clock.every(20, () => ran.push(`tick@${clock.now()}`));
    clock.after(10, () => ran.push(`b@${clock.now()}`)).cancel();
    clock.advance(45);
    expect(ran).toEqual(['tick@20', 'a@30', 'tick@40']);
    expect(clock.now()).toBe(45);
    tick.cancel();
    clock.advance(100);
    expect(ran).toHaveLength(3);
    expect(clock.pendingTimers).toBe(0);
  });

  it('systemClock reads the faked globals, so vi fake timers drive it', () => {
    vi.useFakeTimers({ now: 1_000 });
    const fired: number[] = [];
    systemClock.after(500, () => fired.push(systemClock.now()));
    const every = systemClock.every(200, () => fired.push(systemClock.now()));
    vi.advanceTimersByTime(600);
    every.cancel();
    vi.advanceTimersByTime(1_000);
    expect(fired).toEqual([1_200, 1_400, 1_500, 1_600]);
  });
});

describe('the one bounded cache', () => {
  it('expires entries on its clock and drops the least recently used past max', () => {
    // (lru-cache takes a start time of 0 for "no start": a real clock is never at 0)
    const clock = new ManualClock();
    const cache = boundedCache<string, number>({ max: 2, ttlMs: 1_000, clock });
    cache.set('a', 1);
    clock.advance(999);
    expect(cache.get('a')).toBe(1);
    clock.advance(2);
    expect(cache.get('a')).toBeUndefined();
    cache.set('x', 1);
    cache.set('y', 2);
    cache.get('x');
    cache.set('z', 3);
    expect([...cache.keys()].sort()).toEqual(['x', 'z']);
    // A per-entry TTL shorter than the default.
    cache.set('short', 4, { ttl: 10 });
    clock.advance(11);
    expect(cache.get('short')).toBeUndefined();
  });
});

describe('tool catalogs on the bounded cache', () => {
  it('keep one catalog per key, the least recently used dropped past max, and none expiring with time', () => {
    vi.useFakeTimers({ now: 1_000 });
    try {
      const catalogs = new ToolCatalogs(2);
      const a = catalogs.get('a');
      expect(catalogs.get('a')).toBe(a);
      const b = catalogs.get('b');
      catalogs.get('a');
      catalogs.get('c'); // b was used least recently
      expect(catalogs.get('a')).toBe(a);
      expect(catalogs.get('b')).not.toBe(b);
      vi.advanceTimersByTime(365 * 86_400_000);
      const again = catalogs.get('b');
      expect(catalogs.get('b')).toBe(again);
      catalogs.delete('b');
      expect(catalogs.get('b')).not.toBe(again);
    } finally {
      vi.useRealTimers();
    }
  });
});

describe('defaults that read the time read the one clock', () => {
  it("rotation, key publishing and the shared rate limiter are dated on the clock they were given (the key ring's)", async () => {
    const clock = new ManualClock();
    const dataDir = await mkdtemp(path.join(tmpdir(), 'gitgate-clock-'));
    const ring = await KeyRing.load(dataDir, { graceMs: 60_000, activationMs: 5_000, clock });
    clock.advance(1_000);
    const creds = new Credentials({} as GatewayConfig, ring);
    expect((await creds.rotate()).activeFrom).toBe(clock.now() + 5_000);

    const params: unknown[][] = [];
    const db = {
      replicaId: 'r1',
      query: async (_sql: string, p: unknown[] = []) => {
        params.push(p);
        return { rows: [{ tokens: 0, granted: true }] };
      },
    } as unknown as PgStore;
    await new PgKeys(db, ring, 30_000).publish();
    expect(params.at(-1)?.[2]).toBe(clock.now() + 30_000);
    await new PgRateLimiter(db, clock).take('k', { calls: 1, window_seconds: 1 });
    expect(params.at(-1)?.[2]).toBe(clock.now());
  });
});
