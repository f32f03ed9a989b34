/** A clock that moves only when a test moves it (inject `now` where the code takes a clock). */
export class ManualClock {
  #t: number;

  constructor(start = Date.UTC(2030, 0, 1, 12)) {
    this.#t = start;
  }

  readonly now = (): Date => new Date(this.#t);

  advance(ms: number): void {
    this.#t += ms;
  }
}
