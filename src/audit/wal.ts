import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import path from 'node:path';

/** One durable WAL entry: a signed line and the stream it belongs to. */
export interface WalEntry {
  readonly stream: string;
  readonly seq: number;
  readonly line: string;
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

const check = (s: string) => createHash('sha256').update(s).digest('hex').slice(0, 16);

/** Segmented WAL files under `dir`: wal-<n>.log, one checksummed JSON entry per line. */
export class FileWal implements WriteAheadLog {
  #segment: number;
  #fh: FileHandle | undefined;

  constructor(private readonly dir: string) {
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

  async append(entries: readonly WalEntry[]): Promise<void> {
    if (entries.length === 0) return;
    this.#fh ??= await open(path.join(this.dir, `wal-${this.#segment}.log`), 'a', 0o600);
    const text = entries.map((e) => `${JSON.stringify({ s: e.stream, q: e.seq, l: e.line, c: check(e.line) })}\n`).join('');
    await this.#fh.write(text);
    await this.#fh.datasync();
  }

  async roll(): Promise<number> {
    const closed = this.#segment;
    await this.#fh?.close();
    this.#fh = undefined;
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
        try {
          const e = JSON.parse(raw) as { s: string; q: number; l: string; c: string };
          if (check(e.l) !== e.c) break;
          out.push({ stream: e.s, seq: e.q, line: e.l });
        } catch {
          break; // a torn write at the tail: nothing after it was acknowledged
        }
      }
    }
    return out;
  }

  async close(): Promise<void> {
    await this.#fh?.close();
    this.#fh = undefined;
  }
}
