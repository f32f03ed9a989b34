import { inspect } from 'node:util';

/** A value that never shows itself: not in JSON, not in logs, not in util.inspect. */
export class Secret {
  readonly #value: string;

  constructor(value: string) {
    this.#value = value;
  }

  reveal(): string {
    return this.#value;
  }

  toJSON(): string {
    return '[secret]';
  }

  toString(): string {
    return '[secret]';
  }

  [inspect.custom](): string {
    return 'Secret([secret])';
  }
}
