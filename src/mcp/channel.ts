/** A single-consumer async queue: producers push, one consumer iterates until close or fail. */
export class Channel<T> implements AsyncIterable<T> {
  readonly #items: T[] = [];
  #waiter: { resolve: (r: IteratorResult<T>) => void; reject: (e: unknown) => void } | undefined;
  #done = false;
  #error: unknown;
  readonly #max: number;
  #dropped = 0;
  #onDrain: (() => void)[] = [];

  constructor(max = Number.POSITIVE_INFINITY) {
    this.#max = max;
  }

  get closed(): boolean {
    return this.#done;
  }

  /** Items queued and not yet taken. */
  get size(): number {
    return this.#items.length;
  }

  /**
   * Call `fn` once nothing is queued any more (the consumer took the last item, or
   * gave up): producers that paused their source at a high-water mark resume there.
   */
  onDrain(fn: () => void): void {
    if (this.#items.length === 0) fn();
    else this.#onDrain.push(fn);
  }

  #drained(): void {
    if (this.#items.length > 0 || this.#onDrain.length === 0) return;
    const fns = this.#onDrain;
    this.#onDrain = [];
    for (const fn of fns) fn();
  }

  /** How many items a bounded channel has dropped (oldest first). */
  get dropped(): number {
    return this.#dropped;
  }

  push(item: T): void {
    if (this.#done) return;
    if (this.#waiter) {
      const w = this.#waiter;
      this.#waiter = undefined;
      w.resolve({ value: item, done: false });
      return;
    }
    this.#items.push(item);
    if (this.#items.length > this.#max) {
      this.#items.shift();
      this.#dropped++;
    }
  }

  close(): void {
    if (this.#done) return;
    this.#done = true;
    this.#flushWaiter();
  }

  fail(err: unknown): void {
    if (this.#done) return;
    this.#done = true;
    this.#error = err;
    this.#flushWaiter();
  }

  #flushWaiter(): void {
    if (!this.#waiter || this.#items.length > 0) return;
    const w = this.#waiter;
    this.#waiter = undefined;
    if (this.#error !== undefined) w.reject(this.#error);
    else w.resolve({ value: undefined, done: true });
  }

  next(): Promise<IteratorResult<T>> {
    if (this.#items.length > 0) {
      const value = this.#items.shift()!;
      this.#drained();
      return Promise.resolve({ value, done: false });
    }
    if (this.#done)
      return this.#error !== undefined
        ? Promise.reject(this.#error)
        : Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => {
      this.#waiter = { resolve, reject };
    });
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return {
      next: () => this.next(),
      return: () => {
        this.close();
        this.#items.length = 0;
        this.#drained();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}
