/**
 * Time is a dependency: everything that reads the time or waits takes a Clock.
 * Production passes `systemClock`; tests pass a clock they move by hand
 * (test/helpers/clock.ts) or drive `systemClock` with vi fake timers (it looks
 * the globals up on each call, so faked `Date` and timers reach it).
 */
export interface Timer {
  /** Stop it (idempotent). */
  cancel(): void;
}

export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Run `fn` once after `ms`. A timer never keeps the process alive on its own. */
  after(ms: number, fn: () => void): Timer;
  /** Run `fn` every `ms` until cancelled; never keeps the process alive on its own. */
  every(ms: number, fn: () => void): Timer;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  after(ms, fn) {
    const t = setTimeout(fn, ms);
    t.unref?.();
    return { cancel: () => clearTimeout(t) };
  },
  every(ms, fn) {
    const t = setInterval(fn, ms);
    t.unref?.();
    return { cancel: () => clearInterval(t) };
  },
};
