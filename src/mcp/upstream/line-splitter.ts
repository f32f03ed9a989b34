import type { ByteBudget } from '../../byte-budget.js';
import { GatewayError } from '../../errors.js';

/**
 * Newline-delimited lines from a byte stream (stdio upstreams), bounded: a line
 * is held only up to `maxLineBytes` (and within the upstream's byte budget), so
 * one that never ends fails with UPSTREAM_TOO_LARGE instead of growing without
 * limit. Each chunk is searched once; a trailing CR is dropped (CRLF).
 */
export class LineSplitter {
  #parts: Buffer[] = [];
  #pending = 0;
  /** Truncating: the rest of this line is being dropped. */
  #dropping = false;

  /**
   * `truncate`: a longer line is cut at the cap instead (for diagnostics such as
   * stderr, where losing the end of a line is better than failing).
   */
  constructor(
    private readonly maxLineBytes: number,
    private readonly source: string,
    private readonly budget?: ByteBudget,
    private readonly truncate = false,
  ) {}

  /** Bytes of the unfinished line held now. */
  get pending(): number {
    return this.#pending;
  }

  /** Feed a chunk; returns the lines it completed. Throws UPSTREAM_TOO_LARGE past the cap (nothing is held then). */
  push(chunk: Buffer): string[] {
    const lines: string[] = [];
    let from = 0;
    for (let nl = chunk.indexOf(10); nl >= 0; nl = chunk.indexOf(10, from)) {
      this.#add(chunk.subarray(from, nl));
      lines.push(this.#take());
      from = nl + 1;
    }
    if (from < chunk.length) this.#add(chunk.subarray(from));
    return lines;
  }

  /** Drop what is held (the stream ended or failed). */
  clear(): void {
    this.budget?.release(this.#pending);
    this.#parts = [];
    this.#pending = 0;
    this.#dropping = false;
  }

  #add(piece: Buffer): void {
    if (this.#dropping || piece.length === 0) return;
    if (this.truncate && this.#pending + piece.length > this.maxLineBytes) {
      piece = piece.subarray(0, this.maxLineBytes - this.#pending);
      this.#dropping = true;
    }
    this.#hold(piece.length);
    this.#parts.push(piece);
  }

  #hold(n: number): void {
    if (this.#pending + n > this.maxLineBytes) {
      this.clear();
      throw new GatewayError(
        'UPSTREAM_TOO_LARGE',
        `${this.source} sent a line over ${this.maxLineBytes} bytes (maxResponseBytes)`,
      );
    }
    try {
      this.budget?.reserve(n);
    } catch (err) {
      this.clear();
      throw err;
    }
    this.#pending += n;
  }

  #take(): string {
    const buf = this.#parts.length === 1 ? this.#parts[0]! : Buffer.concat(this.#parts, this.#pending);
    this.budget?.release(this.#pending);
    this.#parts = [];
    this.#pending = 0;
    this.#dropping = false;
    const end = buf.length > 0 && buf[buf.length - 1] === 13 ? buf.length - 1 : buf.length;
    return buf.toString('utf8', 0, end);
  }
}
