import { appendFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { simpleGit, type SimpleGit } from 'simple-git';
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
 * A stream longer than this continues in part files (<stream>~000001.jsonl, …)
 * so a commit never re-hashes more than one bounded file per stream.
 */
export const PART_RECORDS = 5000;
const TAIL_CACHE = 20_000;

/** The file holding a stream's records from `part * PART_RECORDS` on. */
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
  readonly #tails = new Map<string, StreamTail>();
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
    const hit = this.#tails.get(stream);
    if (hit !== undefined) return hit;
    const line = readLastLine(streamFile(this.dir, stream, lastPart(this.dir, stream)));
    if (line === undefined) return undefined;
    let seq: number;
    try {
      seq = parseLine(line).record.seq;
    } catch (err) {
      throw new Error(`audit repo ${path.relative(this.dir, streamFile(this.dir, stream, lastPart(this.dir, stream)))}: last line ${(err as Error).message}`);
    }
    const t = { seq, hash: hashLine(line) };
    this.#remember(stream, t);
    return t;
  }

  /** Cache a tail; the least recently stored go first past TAIL_CACHE entries (they are read from disk again). */
  #remember(stream: string, tail: StreamTail): void {
    this.#tails.delete(stream);
    this.#tails.set(stream, tail);
    if (this.#tails.size > TAIL_CACHE) this.#tails.delete(this.#tails.keys().next().value!);
  }

  append(entries: readonly WalEntry[]): Map<string, StreamTail> {
    const byStream = new Map<string, WalEntry[]>();
    for (const e of entries) (byStream.get(e.stream) ?? byStream.set(e.stream, []).get(e.stream)!).push(e);
    const heads = new Map<string, StreamTail>();
    for (const [stream, list] of byStream) {
      list.sort((a, b) => a.seq - b.seq);
      let next = (this.tail(stream)?.seq ?? -1) + 1;
      const byPart = new Map<number, string[]>();
      let last: string | undefined;
      for (const e of list) {
        if (e.seq < next) continue; // already stored (recovery after a crash mid-commit)
        if (e.seq > next) this.log(`audit stream ${stream}: expected seq ${next}, got ${e.seq} (a gap: records were lost before the WAL)`);
        const part = Math.floor(e.seq / PART_RECORDS);
        (byPart.get(part) ?? byPart.set(part, []).get(part)!).push(e.line);
        last = e.line;
        next = e.seq + 1;
      }
      if (last === undefined) continue;
      for (const [part, lines] of byPart) {
        const file = streamFile(this.dir, stream, part);
        mkdirSync(path.dirname(file), { recursive: true });
        appendFileSync(file, `${lines.join('\n')}\n`);
        this.#touched.add(path.relative(this.dir, file));
      }
      const head = { seq: next - 1, hash: hashLine(last) };
      this.#remember(stream, head);
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
      const prev = this.tail(CHECKPOINT_STREAM);
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
      const file = streamFile(this.dir, CHECKPOINT_STREAM, Math.floor(record.seq / PART_RECORDS));
      appendFileSync(file, `${line}\n`);
      this.#touched.add(path.relative(this.dir, file));
      this.#remember(CHECKPOINT_STREAM, { seq: record.seq, hash: hashLine(line) });
    }
    const keyFile = path.join(this.dir, 'keys', `${this.signer.kid}.jwk`);
    if (!existsSync(keyFile)) {
      mkdirSync(path.dirname(keyFile), { recursive: true });
      writeFileSync(keyFile, `${JSON.stringify(this.signer.publicJwk(), null, 2)}\n`);
      this.#touched.add(path.relative(this.dir, keyFile));
    }
    if (!existsSync(path.join(this.dir, '.git', 'HEAD')) || (await this.#git.raw(['rev-parse', '--verify', '-q', 'HEAD']).catch(() => '')) === '') {
      this.#touched.add('README.md');
    }
    if (this.#touched.size === 0) return;
    // Stage exactly what changed (no tree scan), in bounded argument lists.
    const files = [...this.#touched].filter((f) => existsSync(path.join(this.dir, f)));
    for (let i = 0; i < files.length; i += 500) await this.#git.raw(['add', '--', ...files.slice(i, i + 500)]);
    await this.#git.commit(message);
    this.#touched.clear();
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
