import type { Clock, Timer } from '../../src/clock.js';

interface Pending {
  at: number;
  every: number | undefined;
  fn: () => void;
  cancelled: boolean;
  seq: number;
}

/**
 * A clock that moves only when a test moves it: `advance` runs, in time order,
 * every timer that falls due on the way (an interval as often as it falls due).
 */
export class ManualClock implements Clock {
  #t: number;
  #seq = 0;
  readonly #pending: Pending[] = [];

  constructor(start = Date.UTC(2030, 0, 1, 12)) {
    this.#t = start;
  }

  readonly now = (): number => this.#t;

  /** The time as a Date. */
  date(): Date {
    return new Date(this.#t);
  }

  after(ms: number, fn: () => void): Timer {
    return this.#add(ms, undefined, fn);
  }

  every(ms: number, fn: () => void): Timer {
    return this.#add(ms, Math.max(1, ms), fn);
  }

  /** Timers not yet run nor cancelled. */
  get pendingTimers(): number {
    return this.#pending.filter((p) => !p.cancelled).length;
  }

  advance(ms: number): void {
    const end = this.#t + ms;
    for (;;) {
      const live = this.#pending.filter((p) => !p.cancelled && p.at <= end);
      if (live.length === 0) break;
      const next = live.reduce((a, b) => (b.at < a.at || (b.at === a.at && b.seq < a.seq) ? b : a));
      this.#t = Math.max(this.#t, next.at);
      if (next.every === undefined) next.cancelled = true;
      else next.at += next.every;
      next.fn();
    }
    this.#t = end;
    for (let i = this.#pending.length - 1; i >= 0; i--) if (this.#pending[i]!.cancelled) this.#pending.splice(i, 1);
  }

  #add(ms: number, every: number | undefined, fn: () => void): Timer {
    const p: Pending = { at: this.#t + Math.max(0, ms), every, fn, cancelled: false, seq: this.#seq++ };
    this.#pending.push(p);
    return {
      cancel: () => {
        p.cancelled = true;
      },
    };
  }
}
