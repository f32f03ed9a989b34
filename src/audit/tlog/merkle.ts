import * as crypto from 'node:crypto';

/**
 * RFC 6962 / RFC 9162 Merkle tree hashing (SHA-256): a leaf is H(0x00 || data),
 * an interior node H(0x01 || left || right), the empty tree H(""). Indexes and
 * sizes are plain numbers (exact up to 2^53), so no bitwise operators are used.
 */
export type Hash = Buffer;

export const HASH_BYTES = 32;

const LEAF_PREFIX = Buffer.from([0]);
const NODE_PREFIX = Buffer.from([1]);

/** SHA-256 of one buffer; one-shot where Node has crypto.hash (20.12+: no Hash object per call). */
const sha256: (data: Buffer) => Buffer =
  typeof crypto.hash === 'function'
    ? (data) => crypto.hash('sha256', data, 'buffer') as unknown as Buffer
    : (data) => crypto.createHash('sha256').update(data).digest();

export function leafHash(data: Buffer | string): Hash {
  if (typeof data !== 'string') return sha256(Buffer.concat([LEAF_PREFIX, data]));
  // Encoding the string itself (not a new `\0${data}`) flattens it in place: a line built by
  // concatenation and then kept (the WAL entry the committer takes) holds its text, not the rope.
  const b = Buffer.allocUnsafe(Buffer.byteLength(data, 'utf8') + 1);
  b[0] = 0;
  b.write(data, 1, 'utf8');
  return sha256(b);
}

/** H(0x01 || left || right), written into one 65-byte buffer. */
export function nodeHash(left: Hash, right: Hash): Hash {
  const b = Buffer.allocUnsafe(1 + 2 * HASH_BYTES);
  NODE_PREFIX.copy(b, 0);
  left.copy(b, 1);
  right.copy(b, 1 + HASH_BYTES);
  return sha256(b);
}

export const EMPTY_ROOT: Hash = crypto.createHash('sha256').digest();

/** The largest power of two strictly less than n (n ≥ 2). */
function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

function odd(n: number): boolean {
  return n % 2 === 1;
}

function half(n: number): number {
  return Math.floor(n / 2);
}

/**
 * The compact range [0, size): the roots of the complete subtrees the tree of
 * `size` leaves is made of, largest first (one per set bit of size). All a log
 * needs in memory to append leaves and compute its root.
 */
export class Frontier {
  #size: number;
  readonly #hashes: Hash[];

  constructor(size = 0, hashes: readonly Hash[] = []) {
    if (!Number.isSafeInteger(size) || size < 0) throw new Error(`bad tree size ${size}`);
    if (hashes.length !== popcount(size))
      throw new Error(`a frontier of ${size} leaves holds ${popcount(size)} hashes, not ${hashes.length}`);
    this.#size = size;
    this.#hashes = [...hashes];
  }

  get size(): number {
    return this.#size;
  }

  /** The frontier's hashes, largest subtree first. */
  get hashes(): readonly Hash[] {
    return this.#hashes;
  }

  /**
   * Append one leaf hash; returns the hashes that became complete subtrees,
   * bottom up (the leaf itself first): what a stored-hash file appends.
   */
  append(leaf: Hash): Hash[] {
    const completed = [leaf];
    let h = leaf;
    let n = this.#size;
    while (odd(n)) {
      h = nodeHash(this.#hashes.pop()!, h);
      completed.push(h);
      n = half(n);
    }
    this.#hashes.push(h);
    this.#size++;
    return completed;
  }

  root(): Hash {
    if (this.#hashes.length === 0) return EMPTY_ROOT;
    let r = this.#hashes[this.#hashes.length - 1]!;
    for (let i = this.#hashes.length - 2; i >= 0; i--) r = nodeHash(this.#hashes[i]!, r);
    return r;
  }

  clone(): Frontier {
    return new Frontier(this.#size, this.#hashes);
  }
}

function popcount(n: number): number {
  let c = 0;
  for (let x = n; x > 0; x = half(x)) if (odd(x)) c++;
  return c;
}

/**
 * Reads the hash of a complete subtree: `level` 0 is a leaf, the subtree at
 * (level, index) covers leaves [index·2^level, (index+1)·2^level).
 */
export type SubtreeReader = (level: number, index: number) => Hash;

/** MTH(D[lo:hi]) from complete-subtree hashes; lo is aligned to the largest power of two below hi - lo (as in the proofs). */
function rangeHash(read: SubtreeReader, lo: number, hi: number): Hash {
  const n = hi - lo;
  if (n <= 0) throw new Error(`empty range [${lo}, ${hi})`);
  let level = 0;
  let width = 1;
  while (width < n) {
    width *= 2;
    level++;
  }
  if (width === n && lo % width === 0) return read(level, lo / width);
  const k = splitPoint(n);
  return nodeHash(rangeHash(read, lo, lo + k), rangeHash(read, lo + k, hi));
}

/** The tree's root hash over its first `size` leaves. */
export function treeHash(read: SubtreeReader, size: number): Hash {
  return size === 0 ? EMPTY_ROOT : rangeHash(read, 0, size);
}

/** RFC 9162 §2.1.3.1 PATH(index, D[0:size]): the inclusion proof of a leaf, leaf to root. */
export function inclusionProof(read: SubtreeReader, index: number, size: number): Hash[] {
  if (!(index >= 0 && index < size)) throw new Error(`leaf ${index} is not in a tree of ${size}`);
  const out: Hash[] = [];
  const path = (m: number, lo: number, hi: number): void => {
    const n = hi - lo;
    if (n === 1) return;
    const k = splitPoint(n);
    if (m < k) {
      path(m, lo, lo + k);
      out.push(rangeHash(read, lo + k, hi));
    } else {
      path(m - k, lo + k, hi);
      out.push(rangeHash(read, lo, lo + k));
    }
  };
  path(index, 0, size);
  return out;
}

/** RFC 9162 §2.1.4.1 PROOF(m, D[0:n]): that the tree of n leaves extends the tree of m leaves. */
export function consistencyProof(read: SubtreeReader, m: number, n: number): Hash[] {
  if (!(m >= 0 && m <= n)) throw new Error(`no consistency proof from ${m} to ${n}`);
  const out: Hash[] = [];
  if (m === 0 || m === n) return out;
  const sub = (mm: number, lo: number, hi: number, whole: boolean): void => {
    const size = hi - lo;
    if (mm === size) {
      if (!whole) out.push(rangeHash(read, lo, hi));
      return;
    }
    const k = splitPoint(size);
    if (mm <= k) {
      sub(mm, lo, lo + k, whole);
      out.push(rangeHash(read, lo + k, hi));
    } else {
      sub(mm - k, lo + k, hi, false);
      out.push(rangeHash(read, lo, lo + k));
    }
  };
  sub(m, 0, n, true);
  return out;
}

/** RFC 9162 §2.1.3.2: whether `path` proves leaf `index` with `leaf` hash is in the tree of `size` with `root`. */
export function verifyInclusion(index: number, size: number, leaf: Hash, path: readonly Hash[], root: Hash): boolean {
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(size) || index < 0 || index >= size) return false;
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  for (const p of path) {
    if (sn === 0) return false;
    if (odd(fn) || fn === sn) {
      r = nodeHash(p, r);
      while (!odd(fn) && fn !== 0) {
        fn = half(fn);
        sn = half(sn);
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = half(fn);
    sn = half(sn);
  }
  return sn === 0 && r.equals(root);
}

/** RFC 9162 §2.1.4.2: whether `path` proves the tree (n, nRoot) extends the tree (m, mRoot). */
export function verifyConsistency(m: number, n: number, mRoot: Hash, nRoot: Hash, path: readonly Hash[]): boolean {
  if (!Number.isSafeInteger(m) || !Number.isSafeInteger(n) || m < 0 || m > n) return false;
  if (m === n) return path.length === 0 && mRoot.equals(nRoot);
  if (m === 0) return path.length === 0 && mRoot.equals(EMPTY_ROOT);
  if (path.length === 0) return false;
  const p = isPowerOfTwo(m) ? [mRoot, ...path] : [...path];
  let fn = m - 1;
  let sn = n - 1;
  while (odd(fn)) {
    fn = half(fn);
    sn = half(sn);
  }
  let fr = p[0]!;
  let sr = p[0]!;
  for (const c of p.slice(1)) {
    if (sn === 0) return false;
    if (odd(fn) || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      while (!odd(fn) && fn !== 0) {
        fn = half(fn);
        sn = half(sn);
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = half(fn);
    sn = half(sn);
  }
  return sn === 0 && fr.equals(mRoot) && sr.equals(nRoot);
}

function isPowerOfTwo(n: number): boolean {
  let x = n;
  while (x > 1 && !odd(x)) x = half(x);
  return x === 1;
}

/**
 * Where the hash of the complete subtree (level, index) sits among the stored
 * hashes of a log that appends, per leaf, the leaf's hash and then each
 * subtree it completes (bottom up): the subtree completes with leaf
 * n = (index+1)·2^level - 1, after the 2n - popcount(n) hashes stored before it.
 */
export function storedHashIndex(level: number, index: number): number {
  const n = (index + 1) * 2 ** level - 1;
  return storedHashCount(n) + level;
}

/** How many hashes are stored for a tree of `size` leaves. */
export function storedHashCount(size: number): number {
  return 2 * size - popcount(size);
}
