import { appendFileSync, existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { simpleGit, type SimpleGit } from 'simple-git';
import { git } from '../git/run.js';
import type { StreamTail } from './log.js';
import { hashLine, parseLine, signRecord, type AuditRecord, type AuditSigner } from './record.js';
import { readLastLine } from './tail.js';
import type { WalEntry } from './wal.js';

/** Where committed audit records live (a git repo; a fake in unit tests). */
export interface AuditStore {
  /** The last stored record of a stream, if any. */
  tail(stream: string): StreamTail | undefined;
  /** Append the entries each stream does not have yet (idempotent by seq); returns the new heads. */
  append(entries: readonly WalEntry[]): Map<string, StreamTail>;
  /** Record a signed checkpoint of these heads, publish the signer's key, and commit everything. */
  commit(heads: ReadonlyMap<string, StreamTail>, message: string): Promise<void>;
}

export const CHECKPOINT_STREAM = 'checkpoints';

/**
 * A stream file past this size continues in part files (<stream>~000001.jsonl,
 * …): git re-hashes and stores a touched file whole at every commit, so this
 * bounds the work (and the repo growth) of a commit to this much per stream.
 * A record is never split; one larger than this gets a part of its own.
 */
export const PART_BYTES = 128 * 1024;
const TAIL_CACHE = 20_000;

/** A stream's last record, and where the next one goes. */
interface StoredTail extends StreamTail {
  readonly part: number;
  readonly bytes: number;
}

/** The file holding part `part` of a stream. */
export function streamFile(dir: string, stream: string, part = 0): string {
  if (stream === CHECKPOINT_STREAM) return path.join(dir, part === 0 ? 'checkpoints.jsonl' : `checkpoints~${String(part).padStart(6, '0')}.jsonl`);
  return path.join(dir, 'streams', part === 0 ? `${stream}.jsonl` : `${stream}~${String(part).padStart(6, '0')}.jsonl`);
}

/** (stream, part) of a record file relative to the repo, or undefined for other files. */
export function parseStreamFile(rel: string): { stream: string; part: number } | undefined {
  const norm = rel.split(path.sep).join('/');
  const m = /^(?:streams\/(.+?)|(checkpoints))(?:~(\d{6}))?\.jsonl$/.exec(norm);
  if (!m) return undefined;
  return { stream: m[1] ?? CHECKPOINT_STREAM, part: m[3] === undefined ? 0 : Number(m[3]) };
}

/** The highest part a stream has on disk (0 when it has one file or none); probes by name, no directory scan. */
function lastPart(dir: string, stream: string): number {
  if (!existsSync(streamFile(dir, stream, 0))) return 0;
  let part = 0;
  while (existsSync(streamFile(dir, stream, part + 1))) part++;
  return part;
}

/**
 * The audit repo: streams/<stream>.jsonl (one signed line per record),
 * checkpoints.jsonl (a signed, chained list of stream heads), keys/<kid>.jwk.
 */
export class GitAuditStore implements AuditStore {
  readonly #git: SimpleGit;
  readonly #tails = new Map<string, StoredTail>();
  /** Whether the repo has a first commit (the README goes into it). */
  #born = false;
  /** Files changed since the last commit: exactly what gets staged. */
  readonly #touched = new Set<string>();

  private constructor(
    readonly dir: string,
    private readonly signer: AuditSigner,
    private readonly remote: string | undefined,
    private readonly log: (msg: string) => void,
  ) {
    this.#git = simpleGit(dir);
  }

  static async open(dir: string, signer: AuditSigner, opts: { remote?: string; log?: (msg: string) => void } = {}): Promise<GitAuditStore> {
    mkdirSync(dir, { recursive: true });
    const store = new GitAuditStore(dir, signer, opts.remote, opts.log ?? (() => {}));
    if (!existsSync(path.join(dir, '.git'))) await store.#git.init(['-b', 'main']);
    await store.#git.addConfig('user.name', 'gitgate').addConfig('user.email', 'gitgate@localhost').addConfig('commit.gpgsign', 'false');
    // Every commit stores each touched stream file whole as a new loose object; zlib on those
    // was most of a commit's CPU. They are short-lived: gc packs them, compressed and deltified.
    await store.#git.addConfig('core.looseCompression', '0');
    await store.#discardUncommitted();
    if (!existsSync(path.join(dir, 'README.md'))) {
      writeFileSync(
        path.join(dir, 'README.md'),
        '# gitgate audit log\n\nSigned, hash-chained records of every MCP exchange. Verify with `gitgate audit verify <this repo>`.\n',
      );
    }
    if (opts.remote !== undefined) {
      const remotes = await store.#git.getRemotes();
      if (!remotes.some((r) => r.name === 'origin')) await store.#git.addRemote('origin', opts.remote);
    }
    return store;
  }

  /**
   * Put the work tree back to the last commit. Anything appended after it
   * (possibly a line torn by a crash mid-write) is still in the WAL, which is
   * dropped only after a commit, so recovery appends it again whole.
   */
  async #discardUncommitted(): Promise<void> {
    const head = await this.#git.raw(['rev-parse', '--verify', '-q', 'HEAD']).catch(() => '');
    if (head.trim() !== '') await this.#git.raw(['reset', '-q', '--hard', 'HEAD']);
    await this.#git.raw(['clean', '-q', '-f', '-d']);
  }

  tail(stream: string): StreamTail | undefined {
    return this.#stored(stream);
  }

  #stored(stream: string): StoredTail | undefined {
    const hit = this.#tails.get(stream);
    if (hit !== undefined) return hit;
    const part = lastPart(this.dir, stream);
    const file = streamFile(this.dir, stream, part);
    const line = readLastLine(file);
    if (line === undefined) return undefined;
    let seq: number;
    try {
      seq = parseLine(line).record.seq;
    } catch (err) {
      throw new Error(`audit repo ${path.relative(this.dir, file)}: last line ${(err as Error).message}`);
    }
    const t = { seq, hash: hashLine(line), part, bytes: statSync(file).size };
    this.#remember(stream, t);
    return t;
  }

  /** Cache a tail; the least recently stored go first past TAIL_CACHE entries (they are read from disk again). */
  #remember(stream: string, tail: StoredTail): void {
    this.#tails.delete(stream);
    this.#tails.set(stream, tail);
    if (this.#tails.size > TAIL_CACHE) this.#tails.delete(this.#tails.keys().next().value!);
  }

  /** Append lines to a stream's files, starting a new part where the current one would pass PART_BYTES. */
  #write(stream: string, tail: StoredTail | undefined, lines: readonly string[]): { part: number; bytes: number } {
    let part = tail?.part ?? 0;
    let bytes = tail?.bytes ?? 0;
    let chunk: string[] = [];
    const flush = () => {
      if (chunk.length === 0) return;
      const file = streamFile(this.dir, stream, part);
      mkdirSync(path.dirname(file), { recursive: true });
      appendFileSync(file, `${chunk.join('\n')}\n`);
      this.#touched.add(path.relative(this.dir, file));
      chunk = [];
    };
    for (const line of lines) {
      const size = Buffer.byteLength(line) + 1;
      if (bytes > 0 && bytes + size > PART_BYTES) {
        flush();
        part++;
        bytes = 0;
      }
      chunk.push(line);
      bytes += size;
    }
    flush();
    return { part, bytes };
  }

  append(entries: readonly WalEntry[]): Map<string, StreamTail> {
    const byStream = new Map<string, WalEntry[]>();
    for (const e of entries) (byStream.get(e.stream) ?? byStream.set(e.stream, []).get(e.stream)!).push(e);
    const heads = new Map<string, StreamTail>();
    for (const [stream, list] of byStream) {
      list.sort((a, b) => a.seq - b.seq);
      const tail = this.#stored(stream);
      let next = (tail?.seq ?? -1) + 1;
      const lines: string[] = [];
      let last: WalEntry | undefined;
      for (const e of list) {
        if (e.seq < next) continue; // already stored (recovery after a crash mid-commit)
        if (e.seq > next) this.log(`audit stream ${stream}: expected seq ${next}, got ${e.seq} (a gap: records were lost before the WAL)`);
        lines.push(e.line);
        last = e;
        next = e.seq + 1;
      }
      if (last === undefined) continue;
      const at = this.#write(stream, tail, lines);
      const head = { seq: next - 1, hash: last.hash };
      this.#remember(stream, { ...head, ...at });
      heads.set(stream, head);
    }
    return heads;
  }

  /** Forget cached tails of streams that ended (their files are read again if ever needed). */
  forget(stream: string): void {
    this.#tails.delete(stream);
  }

  async commit(heads: ReadonlyMap<string, StreamTail>, message: string): Promise<void> {
    if (heads.size > 0) {
      const prev = this.#stored(CHECKPOINT_STREAM);
      const record: AuditRecord = {
        v: 1,
        stream: CHECKPOINT_STREAM,
        seq: prev === undefined ? 0 : prev.seq + 1,
        ts: new Date().toISOString(),
        prev: prev?.hash ?? null,
        type: 'checkpoint',
        data: { heads: Object.fromEntries([...heads].sort(([a], [b]) => (a < b ? -1 : 1))) },
      };
      const line = signRecord(this.signer, record);
      const at = this.#write(CHECKPOINT_STREAM, prev, [line]);
      this.#remember(CHECKPOINT_STREAM, { seq: record.seq, hash: hashLine(line), ...at });
    }
    const keyFile = path.join(this.dir, 'keys', `${this.signer.kid}.jwk`);
    if (!existsSync(keyFile)) {
      mkdirSync(path.dirname(keyFile), { recursive: true });
      writeFileSync(keyFile, `${JSON.stringify(this.signer.publicJwk(), null, 2)}\n`);
      this.#touched.add(path.relative(this.dir, keyFile));
    }
    if (!this.#born) {
      this.#born = (await this.#git.raw(['rev-parse', '--verify', '-q', 'HEAD']).catch(() => '')).trim() !== '';
      if (!this.#born) this.#touched.add('README.md');
    }
    if (this.#touched.size === 0) return;
    // Stage exactly what changed: paths on stdin to update-index, so no tree scan and no
    // pathspec matching (`git add` of N paths matches each against every index entry).
    const files = [...this.#touched].filter((f) => existsSync(path.join(this.dir, f)));
    await git(this.dir, ['update-index', '--add', '-z', '--stdin'], {}, `${files.join('\0')}\0`);
    await this.#git.commit(message);
    this.#touched.clear();
    this.#born = true;
    if (this.remote !== undefined) {
      try {
        await this.#git.push('origin', 'HEAD');
      } catch (err) {
        // Committed locally; the push is retried with the next commit.
        this.log(`audit push failed: ${(err as Error).message}`);
      }
    }
  }
}
