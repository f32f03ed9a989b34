/** Server-Sent Events: a bounded incremental parser (eventsource-parser underneath) and an encoder. */
import { createParser, type EventSourceParser } from 'eventsource-parser';
import { GatewayError } from '../errors.js';

export interface SseEvent {
  readonly event: string;
  readonly data: string;
  readonly id?: string;
}

export interface SseLimits {
  /** Bytes in one line, its line break excluded. */
  readonly maxLineBytes: number;
  /** Bytes from an event's first line to the blank line that ends it (comments included). */
  readonly maxEventBytes: number;
  /** Who sends the stream, for the error message. */
  readonly source: string;
}

const LF = 10;
const CR = 13;

/**
 * Feed chunks; get the events they complete. Bytes are counted before they
 * reach the parser, so a line or an event that never ends fails at its cap
 * with UPSTREAM_TOO_LARGE, having cost no more than the cap (the caller
 * destroys the connection). The last event id carries over, as in EventSource.
 */
export class SseParser {
  readonly #limits: SseLimits;
  readonly #parser: EventSourceParser;
  readonly #decoder = new TextDecoder();
  #out: SseEvent[] = [];
  #lastId: string | undefined;
  /** Bytes of the line being read, and of the event so far (lines before it). */
  #lineBytes = 0;
  #eventBytes = 0;
  /** The previous chunk ended with CR: an LF first in this one completes that line break. */
  #afterCr = false;

  constructor(limits: SseLimits) {
    this.#limits = limits;
    this.#parser = createParser({
      onEvent: (ev) => {
        if (ev.id !== undefined) this.#lastId = ev.id;
        this.#out.push({
          event: ev.event ?? 'message',
          data: ev.data,
          ...(this.#lastId !== undefined ? { id: this.#lastId } : {}),
        });
      },
    });
  }

  /** Bytes of the unfinished event (and line) the parser holds now. */
  get pendingBytes(): number {
    return this.#eventBytes + this.#lineBytes;
  }

  /** Feed a chunk; returns the events it completed. Throws UPSTREAM_TOO_LARGE past a cap. */
  push(chunk: Uint8Array | string): SseEvent[] {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    this.#count(bytes);
    this.#parser.feed(this.#decoder.decode(bytes, { stream: true }));
    const out = this.#out;
    this.#out = [];
    return out;
  }

  /** Account for every line break in the chunk, then check the caps. */
  #count(b: Uint8Array): void {
    let i = 0;
    if (this.#afterCr && b.length > 0) {
      this.#afterCr = false;
      if (b[0] === LF) i = 1;
    }
    // Next LF and CR, each searched for again only once passed (one pass over the chunk).
    let lf = -2;
    let cr = -2;
    for (;;) {
      if (lf !== -1 && lf < i) lf = b.indexOf(LF, i);
      if (cr !== -1 && cr < i) cr = b.indexOf(CR, i);
      const br = lf < 0 ? cr : cr < 0 ? lf : Math.min(lf, cr);
      if (br < 0) break;
      const line = this.#lineBytes + (br - i);
      this.#check(line, this.#eventBytes + line);
      // A blank line ends the event; any other line is part of it.
      this.#eventBytes = line === 0 ? 0 : this.#eventBytes + line;
      this.#lineBytes = 0;
      if (b[br] === CR) {
        if (br + 1 === b.length) this.#afterCr = true;
        else if (b[br + 1] === LF) {
          i = br + 2;
          continue;
        }
      }
      i = br + 1;
    }
    this.#lineBytes += b.length - i;
    this.#check(this.#lineBytes, this.#eventBytes + this.#lineBytes);
  }

  #check(line: number, event: number): void {
    const { maxLineBytes, maxEventBytes, source } = this.#limits;
    if (line > maxLineBytes)
      throw new GatewayError('UPSTREAM_TOO_LARGE', `${source} sent an event-stream line over ${maxLineBytes} bytes`);
    if (event > maxEventBytes)
      throw new GatewayError('UPSTREAM_TOO_LARGE', `${source} sent an event over ${maxEventBytes} bytes`);
  }
}

export function encodeSse(data: unknown, id?: string): string {
  const lines = JSON.stringify(data).split('\n');
  return `event: message\n${id !== undefined ? `id: ${id}\n` : ''}${lines.map((l) => `data: ${l}`).join('\n')}\n\n`;
}
