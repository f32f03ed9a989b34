import { createHash, randomBytes } from 'node:crypto';
import { closeSync, fdatasync, fdatasyncSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, write, writeSync } from 'node:fs';
import { open } from 'node:fs/promises';
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

const MIN_SPARE = 256 * 1024;
const MAX_SPARE = 64 << 20;

/**
 * Segmented WAL files under `dir`: wal-<n>.log, one entry per line:
 * `<sha256 of the line>\t<seq>\t<stream as a JSON string>\t<signed line>`.
 * JSON text never holds a raw tab or newline, so the fields split exactly.
 *
 * Segments are preallocated: a spare file of zeros is written and synced in
 * the background, and a new segment is that spare renamed into place. Writing
 * over blocks that already exist changes no metadata, so fdatasync flushes the
 * data alone instead of also committing a journal transaction for the grown
 * file (here about 100 µs instead of 250 µs). A spare is sized a quarter over
 * what the last segment held (256 KiB to 64 MiB); past it a segment simply
 * grows. Recovery stops at the first entry that does not check out, which the
 * zeros after the last entry never do; so after a failed write the segment is
 * abandoned and the next group starts a new one.
 */
export class FileWal implements WriteAheadLog {
  #segment: number;
  #fd: number | undefined;
  /** Where the next group is written in the open segment. */
  #pos = 0;
  /** A zero-filled, synced file ready to become the next segment. */
  #spare: string | undefined;
  #preparing: Promise<void> | undefined;
  /** Until when groups are flushed off the event loop (after a slow flush). */
  #asyncUntil = 0;
  /** How large the next spare is: a little more than the last segment grew to (bounded). */
  #spareBytes: number;

  constructor(
    private readonly dir: string,
    private readonly opts: { slowFlushMs?: number; now?: () => number } = {},
  ) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    for (const f of readdirSync(dir)) if (f.endsWith('.spare')) rmSync(path.join(dir, f), { force: true });
    this.#segment = Math.max(0, ...this.#segments()) + 1;
    this.#spareBytes = MIN_SPARE;
    this.#prepareSpare();
  }

  #segments(): number[] {
    return readdirSync(this.dir)
      .map((f) => /^wal-(\d+)\.log$/.exec(f)?.[1])
      .filter((n): n is string => n !== undefined)
      .map(Number)
      .sort((a, b) => a - b);
  }

  /** Write a spare segment of zeros on the thread pool; failures only mean the next segment grows instead. */
  #prepareSpare(): void {
    if (this.#spare !== undefined || this.#preparing !== undefined) return;
    const file = path.join(this.dir, `${randomBytes(6).toString('hex')}.spare`);
    this.#preparing = (async () => {
      const fh = await open(file, 'wx', 0o600);
      try {
        await fh.write(Buffer.alloc(this.#spareBytes));
        await fh.datasync();
      } finally {
        await fh.close();
      }
      this.#spare = file;
    })()
      .catch(() => rmSync(file, { force: true }))
      .finally(() => {
        this.#preparing = undefined;
      });
  }

  /** The open segment, creating it (from the spare when one is ready) and making its name durable. */
  #open(): number {
    if (this.#fd !== undefined) return this.#fd;
    const file = path.join(this.dir, `wal-${this.#segment}.log`);
    const spare = this.#spare;
    this.#spare = undefined;
    if (spare !== undefined) {
      renameSync(spare, file);
      this.#fd = openSync(file, 'r+');
    } else {
      this.#fd = openSync(file, 'wx', 0o600);
    }
    this.#pos = 0;
    // The new name must survive a power cut before anything written under it is acknowledged.
    const dirFd = openSync(this.dir, 'r');
    try {
      fsyncSync(dirFd);
    } finally {
      closeSync(dirFd);
    }
    this.#prepareSpare();
    return this.#fd;
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
    const fd = this.#open();
    let text = '';
    for (const e of entries) text += `${e.hash}\t${e.seq}\t${JSON.stringify(e.stream)}\t${e.line}\n`;
    const data = Buffer.from(text);
    const at = this.#pos;
    this.#pos += data.length;
    const now = this.opts.now ?? Date.now;
    if (now() < this.#asyncUntil) {
      return flushAsync(fd, data, at).catch((err: unknown) => {
        this.#abandon();
        throw err;
      });
    }
    const started = now();
    try {
      for (let off = 0; off < data.length; ) off += writeSync(fd, data, off, data.length - off, at + off);
      fdatasyncSync(fd);
    } catch (err) {
      this.#abandon();
      throw err;
    }
    if (now() - started > (this.opts.slowFlushMs ?? 10)) this.#asyncUntil = now() + 10_000;
  }

  /**
   * After a failed write the segment may hold a torn entry, and recovery reads
   * a segment only up to its first bad entry: later groups go to a new segment.
   */
  #abandon(): void {
    if (this.#fd !== undefined) {
      try {
        closeSync(this.#fd);
      } catch {
        // already unusable
      }
    }
    this.#fd = undefined;
    this.#segment++;
  }

  /** Resolves once a spare segment is ready (or its preparation failed): whether one is. */
  async spareReady(): Promise<boolean> {
    await this.#preparing;
    return this.#spare !== undefined;
  }

  /** Whether the next group will be flushed on the thread pool (after a slow flush). */
  get flushingAsync(): boolean {
    return (this.opts.now ?? Date.now)() < this.#asyncUntil;
  }

  async roll(): Promise<number> {
    const closed = this.#segment;
    if (this.#pos > 0) this.#spareBytes = Math.min(MAX_SPARE, Math.max(MIN_SPARE, Math.ceil((this.#pos * 1.25) / MIN_SPARE) * MIN_SPARE));
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
    await this.#preparing;
    if (this.#spare !== undefined) rmSync(this.#spare, { force: true });
    this.#spare = undefined;
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

/** Write all of `data` at `at` and fdatasync, on the thread pool. */
function flushAsync(fd: number, data: Buffer, at: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const from = (off: number) =>
      write(fd, data, off, data.length - off, at + off, (err, n) => {
        if (err) return reject(err);
        if (off + n < data.length) return from(off + n);
        fdatasync(fd, (e) => (e ? reject(e) : resolve()));
      });
    from(0);
  });
}
