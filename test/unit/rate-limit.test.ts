import { describe, expect, it } from 'vitest';
import { GatewayError } from '../../src/errors.js';
import { RateLimiter } from '../../src/policy/rate-limit.js';
import { ManualClock } from '../helpers/clock.js';

const limited = (f: () => void): GatewayError => {
  try {
    f();
  } catch (e) {
    if (e instanceof GatewayError) return e;
    throw e;
  }
  throw new Error('not rate limited');
};

describe('RateLimiter (token buckets on the clock)', () => {
  const rate = { calls: 3, window_seconds: 60 };

  it('allows `calls` at once, then refuses with Retry-After, and refills over the window', () => {
    const clock = new ManualClock();
    const rates = new RateLimiter(clock);
    for (let i = 0; i < 3; i++) rates.take('alice', rate);
    const err = limited(() => rates.take('alice', rate));
    expect(err.code).toBe('RATE_LIMITED');
    expect(err.headers).toEqual({ 'retry-after': '20' });
    expect(err.data).toMatchObject({ retry_after_seconds: 20, limit: 3, window_seconds: 60 });
    // Another key has its own bucket.
    rates.take('bob', rate);
    clock.advance(19_999);
    expect(limited(() => rates.take('alice', rate)).headers).toEqual({ 'retry-after': '1' });
    clock.advance(20_001);
    rates.take('alice', rate);
    rates.close();
  });

  it('a changed rate for a key starts a fresh bucket', () => {
    const rates = new RateLimiter(new ManualClock());
    for (let i = 0; i < 3; i++) rates.take('k', rate);
    rates.take('k', { calls: 1, window_seconds: 60 });
    expect(limited(() => rates.take('k', { calls: 1, window_seconds: 60 })).code).toBe('RATE_LIMITED');
    rates.close();
  });

  it('idle buckets are swept on the clock (a full bucket again after its window)', () => {
    const clock = new ManualClock();
    const rates = new RateLimiter(clock);
    for (let i = 0; i < 3; i++) rates.take('idle', { calls: 3, window_seconds: 1 });
    // Within the window nothing is swept: still empty.
    expect(limited(() => rates.take('idle', { calls: 3, window_seconds: 1 })).code).toBe('RATE_LIMITED');
    clock.advance(61_000); // the sweeper runs every 60 s
    expect(clock.pendingTimers).toBe(1);
    for (let i = 0; i < 3; i++) rates.take('idle', { calls: 3, window_seconds: 1 });
    rates.close();
    expect(clock.pendingTimers).toBe(0);
  });
});
