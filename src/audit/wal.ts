import { randomBytes } from 'node:crypto';
import {
  closeSync,
  constants,
  open as fsOpen,
  write as fsWrite,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  rmSync,
} from 'node:fs';
import { open, rename } from 'node:fs/promises';
import path from 'node:path';
import { leafHead, sha256Hex } from './record.js';

/** One durable WAL entry: a record line, its leaf index and the stream it belongs to. */
export interface WalEntry {
  readonly stream: string;
  readonly seq: number;
  readonly leaf: number;
  readonly line: string;
  /** The line's leaf hash (hex, SHA-256(0x00 || line)): the next record's `prev`, the tree's leaf, and the WAL's checksum of the entry. */
  readonly hash: string;
}

/** The writing side of the write-ahead log (a real one on disk; fakes in tests). The sealer has one append in flight at a time. */
export interface WriteAheadLog {
  /** Write the entries (one group) durably; resolves once they are, rejects when they may not be. */
  append(entries: readonly WalEntry[]): Promise<void>;
  /** Close the current segment and start a new one; returns the closed segment's number. */
  roll(): number;
  close(): Promise<void>;
}

/** Something recovery found wrong in a segment, and what it did about it. */
export interface WalDamage {
  /** The segment's file name (wal-<n>.log). */
  readonly segment: string;
  /** 1-based line in it. */
  readonly line: number;
  /**
   * - `framing`: the entry's seq or stream field disagrees with its record (intact: its checksum
   *   matches); the record's own stream and seq are used, so nothing is misfiled.
   * - `trailer`: a group's trailer does not match its entries, every one of which checks out: nothing is lost.
   * - `lost`: an entry that does not check out in a group written before a later, complete group:
   *   a record that was acknowledged is gone. Recovery refuses to go on (see AuditCommitter.recover).
   * - `torn`: the end of a segment does not check out: the write a crash (or a failed write) cut
   *   short, never acknowledged; discarded.
   */
  readonly kind: 'framing' | 'trailer' | 'lost' | 'torn';
  readonly why: string;
}

export interface RecoveredWal {
  /** Every intact entry in every segment, oldest first (see recoverEntries). */
  readonly entries: WalEntry[];
  readonly damage: WalDamage[];
}

/** The WAL's segments as the committer sees them: read back on start, dropped once committed. */
export interface WalFiles {
  /** Every segment's entries (start: recovery). */
  recover(): RecoveredWal;
  /** The segments up to and including `segment` that are still there, oldest first. */
  list(upTo: number): number[];
  /**
   * One rolled segment's entries, cut where the next segment starts over (its first leaf: after
   * a failed write, the later entries win, as in recovery).
   */
  read(segment: number): RecoveredWal;
  /** Delete segments up to and including `segment` (their entries are committed). */
  drop(segment: number): void;
}

function openFd(file: string, flags: number, mode?: number): Promise<number> {
  return new Promise((resolve, reject) => fsOpen(file, flags, mode, (err, fd) => (err ? reject(err) : resolve(fd))));
}

/** One write of `data` from `off` at `pos` (callback fs: the least the thread pool's round trip costs); how much it wrote. */
function writeAt(fd: number, data: Buffer, off: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) =>
    fsWrite(fd, data, off, data.length - off, pos, (err, n) => (err ? reject(err) : resolve(n))),
  );
}

/** How a group's trailer line starts (an entry starts with a hex digit). */
const TRAILER = '=\t';
const MIN_SPARE = 256 * 1024;
/**
 * A segment past this size is closed after its group and the next group starts a new one, so a
 * committer that fell behind reads the backlog back one bounded segment at a time.
 */
export const SEGMENT_BYTES = 16 << 20;
const MAX_SPARE = SEGMENT_BYTES + MIN_SPARE;

/**
 * Segmented WAL files under `dir`: wal-<n>.log, one entry per line:
 * `<leaf hash of the line>\t<seq>\t<stream as a JSON string>\t<record line>`,
 * and after each group (one write + fdatasync) a trailer line
 * `=\t<entries in the group>\t<sha256 of the group's entry lines>`.
 * JSON text never holds a raw tab or newline, so the fields split exactly.
 * Recovery takes an entry's stream, seq and leaf from its line (which its
 * checksum, the leaf hash, covers), never from the fields beside it; the trailer tells a
 * group that was written whole (so every group before it was acknowledged)
 * from the torn end of a segment.
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
  /** How large the next spare is: a little more than the last segment grew to (bounded). */
  #spareBytes: number;

  /**
   * Opens the WAL in `dir` for writing: new entries go to a segment numbered after every existing one.
   * `segmentBytes`: where a segment is closed after its group (default SEGMENT_BYTES; tests make it small).
   */
  constructor(
    private readonly dir: string,
    private readonly segmentBytes = SEGMENT_BYTES,
  ) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    for (const f of readdirSync(dir)) if (f.endsWith('.spare')) rmSync(path.join(dir, f), { force: true });
    this.#segment = Math.max(0, ...segments(dir)) + 1;
    this.#spareBytes = MIN_SPARE;
    this.#prepareSpare();
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

  /**
   * The open segment, creating it (from the spare when one is ready) and making its name durable,
   * on the thread pool. Opened O_DSYNC: each write returns once its data is on the disk (one call,
   * not write + fdatasync).
   */
  async #open(): Promise<number> {
    if (this.#fd !== undefined) return this.#fd;
    const file = path.join(this.dir, `wal-${this.#segment}.log`);
    const spare = this.#spare;
    this.#spare = undefined;
    let fd: number;
    if (spare !== undefined) {
      await rename(spare, file);
      fd = await openFd(file, constants.O_RDWR | constants.O_DSYNC);
    } else {
      fd = await openFd(file, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL | constants.O_DSYNC, 0o600);
    }
    try {
      // The new name must survive a power cut before anything written under it is acknowledged.
      const dir = await open(this.dir, 'r');
      try {
        await dir.sync();
      } finally {
        await dir.close();
      }
    } catch (err) {
      closeSync(fd);
      throw err;
    }
    this.#fd = fd;
    this.#pos = 0;
    this.#prepareSpare();
    return this.#fd;
  }

  /**
   * One O_DSYNC write per group, on the thread pool: the event loop goes on, and the sealer
   * gathers what arrives meanwhile into the next group. The sealer never has two in flight.
   */
  async append(entries: readonly WalEntry[]): Promise<void> {
    if (entries.length === 0) return;
    let text = '';
    for (const e of entries) text += `${e.hash}\t${e.seq}\t${JSON.stringify(e.stream)}\t${e.line}\n`;
    // Encoded once: the trailer's checksum is of these very bytes.
    const body = Buffer.from(text, 'utf8');
    const data = Buffer.concat([body, Buffer.from(`${TRAILER}${entries.length}\t${sha256Hex(body)}\n`)]);
    try {
      const fd = await this.#open();
      const at = this.#pos;
      this.#pos += data.length;
      for (let off = 0; off < data.length; ) off += await writeAt(fd, data, off, at + off);
    } catch (err) {
      this.#abandon();
      throw err;
    }
    if (this.#pos >= this.segmentBytes) this.roll();
  }

  /**
   * After a failed write the segment may hold a torn entry, and recovery reads
   * a segment only up to its first bad entry: later groups go to a new segment.
   */
  #abandon(): void {
    this.#closeSegment();
    this.#segment++;
  }

  #closeSegment(): void {
    const fd = this.#fd;
    this.#fd = undefined;
    if (fd === undefined) return;
    try {
      closeSync(fd);
    } catch {
      // already unusable
    }
  }

  /** Resolves once a spare segment is ready (or its preparation failed): whether one is. */
  async spareReady(): Promise<boolean> {
    await this.#preparing;
    return this.#spare !== undefined;
  }

  roll(): number {
    const closed = this.#segment;
    if (this.#pos > 0)
      this.#spareBytes = Math.min(
        MAX_SPARE,
        Math.max(MIN_SPARE, Math.ceil((this.#pos * 1.25) / MIN_SPARE) * MIN_SPARE),
      );
    this.#closeSegment();
    this.#segment++;
    return closed;
  }

  async close(): Promise<void> {
    this.#closeSegment();
    await this.#preparing;
    if (this.#spare !== undefined) rmSync(this.#spare, { force: true });
    this.#spare = undefined;
  }
}

/** The leaf of a segment's first entry (read from its first line only), when it has one that checks out. */
function firstLeaf(file: string): number | undefined {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch {
    return undefined;
  }
  try {
    const chunks: Buffer[] = [];
    const buf = Buffer.alloc(64 * 1024);
    let at = 0;
    // An entry is at most a record line and its fields: bounded by what the log ever writes (a few MiB).
    for (
      let n = readSync(fd, buf, 0, buf.length, at);
      n > 0 && at < SEGMENT_BYTES;
      n = readSync(fd, buf, 0, buf.length, at)
    ) {
      const nl = buf.subarray(0, n).indexOf(10);
      chunks.push(Buffer.from(buf.subarray(0, nl < 0 ? n : nl)));
      if (nl >= 0) {
        const row = Buffer.concat(chunks).toString('utf8');
        return row.startsWith(TRAILER) ? undefined : parseEntry(row, () => undefined)?.leaf;
      }
      at += n;
    }
    return undefined;
  } finally {
    closeSync(fd);
  }
}

function segments(dir: string): number[] {
  return readdirSync(dir)
    .map((f) => /^wal-(\d+)\.log$/.exec(f)?.[1])
    .filter((n): n is string => n !== undefined)
    .map(Number)
    .sort((a, b) => a - b);
}

/** The segments in `dir`, to read back and drop (the writer may be busy with a newer one meanwhile). */
export function walFiles(dir: string): WalFiles {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const text = (n: number) => ({ name: `wal-${n}.log`, text: readFileSync(path.join(dir, `wal-${n}.log`), 'utf8') });
  return {
    recover: () => recoverEntries(segments(dir).map(text)),
    list: (upTo) => segments(dir).filter((n) => n <= upTo),
    read(segment) {
      const got = recoverEntries([text(segment)]);
      const next = segments(dir).find((n) => n > segment);
      const cut = next === undefined ? undefined : firstLeaf(path.join(dir, `wal-${next}.log`));
      return cut === undefined ? got : { entries: got.entries.filter((e) => e.leaf < cut), damage: got.damage };
    },
    drop(segment) {
      for (const n of segments(dir)) if (n <= segment) rmSync(path.join(dir, `wal-${n}.log`), { force: true });
    },
  };
}

interface Row {
  readonly line: number;
  readonly raw: string;
  /** Undefined when the row does not check out. */
  readonly entry?: WalEntry;
}

/**
 * One segment's entries: those of every group up to the last complete one
 * (a bad entry there is `lost`), then the torn end's entries up to its first
 * bad one.
 */
function readSegment(name: string, text: string, damage: WalDamage[]): WalEntry[] {
  const rows = text.split('\n');
  const groups: { rows: Row[]; sealed: boolean; trailer?: number }[] = [];
  let current: Row[] = [];
  let currentText = '';
  for (let i = 0; i < rows.length; i++) {
    const raw = rows[i]!;
    // After the last newline: the zeros of a preallocated segment, or a write cut short.
    if (i === rows.length - 1 && /^\0*$/.test(raw)) break;
    if (raw.startsWith(TRAILER)) {
      const [, count, sum] = raw.split('\t');
      const sealed = Number(count) === current.length && sum === sha256Hex(currentText);
      groups.push({ rows: current, sealed, trailer: i + 1 });
      current = [];
      currentText = '';
      continue;
    }
    const entry =
      i === rows.length - 1
        ? undefined
        : parseEntry(raw, (why) => damage.push({ segment: name, line: i + 1, kind: 'framing', why }));
    current.push({ line: i + 1, raw, ...(entry !== undefined ? { entry } : {}) });
    currentText += `${raw}\n`;
  }
  if (current.length > 0) groups.push({ rows: current, sealed: false });
  let complete = -1;
  groups.forEach((g, i) => {
    if (g.sealed) complete = i;
  });
  const out: WalEntry[] = [];
  groups.forEach((g, i) => {
    if (i <= complete) {
      // Written before a complete group: acknowledged. Every intact entry counts; a bad one was a record.
      for (const r of g.rows) {
        if (r.entry !== undefined) out.push(r.entry);
        else if (r.raw.startsWith('='))
          damage.push({ segment: name, line: r.line, kind: 'trailer', why: 'a damaged group trailer' });
        else
          damage.push({
            segment: name,
            line: r.line,
            kind: 'lost',
            why: `damaged entry (checksum or layout) in a group written before later complete groups: an acknowledged record is lost`,
          });
      }
      if (!g.sealed && g.rows.every((r) => r.entry !== undefined) && g.trailer !== undefined) {
        damage.push({
          segment: name,
          line: g.trailer,
          kind: 'trailer',
          why: 'the group trailer does not match its entries, which all check out',
        });
      }
      return;
    }
    // The torn end: entries up to the first that does not check out (nothing after it was acknowledged).
    const bad = g.rows.findIndex((r) => r.entry === undefined);
    for (const r of bad < 0 ? g.rows : g.rows.slice(0, bad)) out.push(r.entry!);
    if (bad >= 0) {
      const rest = groups.slice(i + 1).reduce((n, h) => n + h.rows.length, g.rows.length - bad);
      damage.push({
        segment: name,
        line: g.rows[bad]!.line,
        kind: 'torn',
        why: `the end of the segment was cut short: ${rest} line(s) discarded (never acknowledged)`,
      });
    }
  });
  return out;
}

/**
 * The intact entries of the segments, oldest first, and what was found
 * damaged. Within a segment see readSegment. When a stream's seq goes back,
 * the later entries win: after a failed write the log rewrites the stream
 * from its last durable record, and what the failed write left behind was
 * never acknowledged.
 */
export function recoverEntries(
  segmentTexts: readonly { readonly name: string; readonly text: string }[],
): RecoveredWal {
  const all: WalEntry[] = [];
  const damage: WalDamage[] = [];
  for (const seg of segmentTexts) {
    for (const e of readSegment(seg.name, seg.text, damage)) {
      // Leaf indexes go back after a failed write too (its records were never durable): the later entries win.
      while (all.length > 0 && all[all.length - 1]!.leaf >= e.leaf) all.pop();
      all.push(e);
    }
  }
  const out: WalEntry[] = [];
  const last = new Map<string, number>();
  let rewound = false;
  for (const e of all) {
    if ((last.get(e.stream) ?? -1) >= e.seq) rewound = true;
    last.set(e.stream, e.seq);
    out.push(e);
  }
  if (!rewound) return { entries: out, damage };
  // Keep, per stream, only the entries the final chain runs through.
  const kept: (WalEntry | undefined)[] = [...out];
  const chain = new Map<string, number[]>();
  out.forEach((e, i) => {
    const at = chain.get(e.stream) ?? chain.set(e.stream, []).get(e.stream)!;
    while (at.length > 0 && out[at[at.length - 1]!]!.seq >= e.seq) kept[at.pop()!] = undefined;
    at.push(i);
  });
  return { entries: kept.filter((e) => e !== undefined), damage };
}

/**
 * One WAL line back into its entry, or undefined when it does not check out.
 * Stream and seq come from the signed line the checksum covers; the fields
 * beside it are only compared (`framing` is told when they disagree).
 */
function parseEntry(raw: string, framing: (why: string) => void): WalEntry | undefined {
  const a = raw.indexOf('\t');
  const b = raw.indexOf('\t', a + 1);
  const c = raw.indexOf('\t', b + 1);
  if (a < 0 || b < 0 || c < 0) return undefined;
  // The line, as its own string: a slice of the segment's text would keep the whole segment (MiBs)
  // alive for as long as anything read from the line is (a stream's tail ts, say).
  const bytes = Buffer.from(`\0${raw.slice(c + 1)}`, 'utf8');
  const hash = sha256Hex(bytes);
  if (hash !== raw.slice(0, a)) return undefined;
  const line = bytes.toString('utf8', 1);
  const head = leafHead(line);
  if (head === undefined) return undefined;
  const seqField = raw.slice(a + 1, b);
  const streamField = raw.slice(b + 1, c);
  if (seqField !== String(head.seq) || streamField !== JSON.stringify(head.stream)) {
    framing(
      `the entry's fields say stream ${streamField} seq ${seqField}, its record says stream ${JSON.stringify(head.stream)} seq ${head.seq}: the record's are used`,
    );
  }
  return { stream: head.stream, seq: head.seq, leaf: head.leaf, line, hash };
}
