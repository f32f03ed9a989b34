import { createHash } from 'node:crypto';
import { closeSync, fdatasync, fdatasyncSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, write, writeSync } from 'node:fs';
import path from 'node:path';

/** One durable WAL entry: a signed line and the stream it belongs to. */
export interface WalEntry {
  readonly stream: string;
  readonly seq: number;
  readonly line: string;
  /** sha256 (hex) of the line: the next record's `prev`, and the WAL's checksum of the entry. */
  readonly hash: string;
}

/** The write-ahead log as the audit log uses it (a real one on disk; fakes in tests). */
export interface WriteAheadLog {
  /** Write and fdatasync the entries (one group); resolves when durable. */
  append(entries: readonly WalEntry[]): Promise<void>;
  /** Close the current segment and start a new one; returns the closed segment's number. */
  roll(): Promise<number>;
  /** Delete segments up to and including `segment` (their entries are committed). */
  drop(segment: number): void;
  /** Every intact entry in every segment, oldest first (a torn tail is discarded). */
  recover(): WalEntry[];
  close(): Promise<void>;
}

/**
 * Segmented WAL files under `dir`: wal-<n>.log, one entry per line:
 * `<sha256 of the line>\t<seq>\t<stream as a JSON string>\t<signed line>`.
 * JSON text never holds a raw tab or newline, so the fields split exactly.
 */
export class FileWal implements WriteAheadLog {
  #segment: number;
  #fd: number | undefined;
  /** Until when groups are flushed off the event loop (after a slow flush). */
  #asyncUntil = 0;

  constructor(
    private readonly dir: string,
    private readonly opts: { slowFlushMs?: number; now?: () => number } = {},
  ) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.#segment = Math.max(0, ...this.#segments()) + 1;
  }

  #segments(): number[] {
    return readdirSync(this.dir)
      .map((f) => /^wal-(\d+)\.log$/.exec(f)?.[1])
      .filter((n): n is string => n !== undefined)
      .map(Number)
      .sort((a, b) => a - b);
  }

  /**
   * One write + fdatasync per group. On a fast disk the flush runs on the event
   * loop: it takes a fraction of a millisecond, every request waits for its
   * group anyway, and the two thread-pool round trips cost more CPU and latency
   * than the flush. A flush slower than `slowFlushMs` (default 10) moves the
   * next 10 s of flushes to the thread pool, so a slow disk never stalls the loop.
   */
  async append(entries: readonly WalEntry[]): Promise<void> {
    if (entries.length === 0) return;
    this.#fd ??= openSync(path.join(this.dir, `wal-${this.#segment}.log`), 'a', 0o600);
    let text = '';
    for (const e of entries) text += `${e.hash}\t${e.seq}\t${JSON.stringify(e.stream)}\t${e.line}\n`;
    const data = Buffer.from(text);
    const now = this.opts.now ?? Date.now;
    if (now() < this.#asyncUntil) return flushAsync(this.#fd, data);
    const started = now();
    for (let off = 0; off < data.length; ) off += writeSync(this.#fd, data, off);
    fdatasyncSync(this.#fd);
    if (now() - started > (this.opts.slowFlushMs ?? 10)) this.#asyncUntil = now() + 10_000;
  }

  /** Whether the next group will be flushed on the thread pool (after a slow flush). */
  get flushingAsync(): boolean {
    return (this.opts.now ?? Date.now)() < this.#asyncUntil;
  }

  async roll(): Promise<number> {
    const closed = this.#segment;
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
    this.#segment++;
    return closed;
  }

  drop(segment: number): void {
    for (const n of this.#segments()) if (n <= segment) rmSync(path.join(this.dir, `wal-${n}.log`), { force: true });
  }

  recover(): WalEntry[] {
    const out: WalEntry[] = [];
    for (const n of this.#segments()) {
      const text = readFileSync(path.join(this.dir, `wal-${n}.log`), 'utf8');
      for (const raw of text.split('\n')) {
        if (raw === '') continue;
        const e = parseEntry(raw);
        if (e === undefined) break; // a torn write at the tail: nothing after it was acknowledged
        out.push(e);
      }
    }
    return out;
  }

  async close(): Promise<void> {
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
  }
}

/** One WAL line back into its entry, or undefined when it is torn or corrupt. */
function parseEntry(raw: string): WalEntry | undefined {
  const a = raw.indexOf('\t');
  const b = raw.indexOf('\t', a + 1);
  const c = raw.indexOf('\t', b + 1);
  if (a < 0 || b < 0 || c < 0) return undefined;
  const hash = raw.slice(0, a);
  const line = raw.slice(c + 1);
  if (createHash('sha256').update(line).digest('hex') !== hash) return undefined;
  const seq = Number(raw.slice(a + 1, b));
  let stream: unknown;
  try {
    stream = JSON.parse(raw.slice(b + 1, c));
  } catch {
    return undefined;
  }
  if (!Number.isInteger(seq) || typeof stream !== 'string') return undefined;
  return { stream, seq, line, hash };
}

/** Write all of `data` and fdatasync, on the thread pool. */
function flushAsync(fd: number, data: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const from = (off: number) =>
      write(fd, data, off, data.length - off, null, (err, n) => {
        if (err) return reject(err);
        if (off + n < data.length) return from(off + n);
        fdatasync(fd, (e) => (e ? reject(e) : resolve()));
      });
    from(0);
  });
}
