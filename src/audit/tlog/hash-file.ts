import { closeSync, fstatSync, ftruncateSync, openSync, readSync, writeSync } from 'node:fs';
import { Frontier, HASH_BYTES, type Hash, storedHashCount, storedHashIndex } from './merkle.js';

/** The largest tree size whose stored hashes fit in `count` hashes. */
function sizeForStoredCount(count: number): number {
  // storedHashCount is increasing: 2n - popcount(n) ≤ count, search from count/2 upward.
  let n = Math.max(0, Math.floor(count / 2));
  while (storedHashCount(n + 1) <= count) n++;
  while (n > 0 && storedHashCount(n) > count) n--;
  return n;
}

/**
 * The log's stored hashes on disk: for each leaf in order, its hash and then
 * every subtree it completes, bottom up (so the hash of subtree (level, index)
 * is at storedHashIndex(level, index)). Append-only; proofs read O(log n)
 * hashes from it and memory holds only the frontier. It is derived data
 * (rebuilt from the records when short or missing), so it is not fsynced: a
 * torn tail is cut back to the last whole leaf on open.
 */
export class HashFile {
  readonly #fd: number;
  #frontier: Frontier;
  #closed = false;
  #readOnly = false;

  private constructor(fd: number, frontier: Frontier) {
    this.#fd = fd;
    this.#frontier = frontier;
  }

  /**
   * Read-only, beside the writer (a publisher or prover on another thread): the whole leaves the
   * file holds now, nothing cut or written.
   */
  static openReadOnly(file: string): HashFile {
    const fd = openSync(file, 'r');
    const size = sizeForStoredCount(Math.floor(fstatSync(fd).size / HASH_BYTES));
    const hf = new HashFile(fd, frontierAt(fd, size));
    hf.#readOnly = true;
    return hf;
  }

  static open(file: string): HashFile {
    const fd = openSync(file, 'a+', 0o600);
    const stored = Math.floor(fstatSync(fd).size / HASH_BYTES);
    const size = sizeForStoredCount(stored);
    if (fstatSync(fd).size !== storedHashCount(size) * HASH_BYTES)
      ftruncateSync(fd, storedHashCount(size) * HASH_BYTES);
    return new HashFile(fd, frontierAt(fd, size));
  }

  get size(): number {
    return this.#frontier.size;
  }

  /** A copy of the frontier (the compact range of the whole tree). */
  frontier(): Frontier {
    return this.#frontier.clone();
  }

  root(): Hash {
    return this.#frontier.root();
  }

  /** Append leaf hashes in order (one write). */
  append(leaves: readonly Hash[]): void {
    if (this.#readOnly) throw new Error('the stored hash file is open read-only');
    if (leaves.length === 0) return;
    const out: Hash[] = [];
    for (const l of leaves) out.push(...this.#frontier.append(l));
    const buf = Buffer.concat(out);
    for (let off = 0; off < buf.length; ) off += writeSync(this.#fd, buf, off, buf.length - off);
  }

  /** Cut the file back to `size` leaves (recovery found fewer durable records than it holds). */
  truncate(size: number): void {
    if (size >= this.size) return;
    if (this.#readOnly) throw new Error('the stored hash file is open read-only');
    ftruncateSync(this.#fd, storedHashCount(size) * HASH_BYTES);
    this.#frontier = frontierAt(this.#fd, size);
  }

  /** The hash of complete subtree (level, index); it must be within the tree. */
  read(level: number, index: number): Hash {
    if ((index + 1) * 2 ** level > this.size) throw new Error(`subtree ${level}/${index} is not in the tree`);
    return readHashAt(this.#fd, storedHashIndex(level, index));
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    closeSync(this.#fd);
  }
}

/** The frontier of the first `size` leaves, read from the stored hashes. */
function frontierAt(fd: number, size: number): Frontier {
  const hashes: Hash[] = [];
  let start = 0;
  for (let level = 52; level >= 0; level--) {
    const w = 2 ** level;
    if (Math.floor(size / w) % 2 === 1) {
      hashes.push(readHashAt(fd, storedHashIndex(level, start / w)));
      start += w;
    }
  }
  return new Frontier(size, hashes);
}

function readHashAt(fd: number, i: number): Hash {
  const b = Buffer.alloc(HASH_BYTES);
  const n = readSync(fd, b, 0, HASH_BYTES, i * HASH_BYTES);
  if (n !== HASH_BYTES) throw new Error(`stored hash ${i} is missing`);
  return b;
}
