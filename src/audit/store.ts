import {
  appendFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readlinkSync,
  realpathSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { type SimpleGit, simpleGit } from 'simple-git';
import { GatewayError } from '../errors.js';
import { git } from '../git/run.js';
import type { StreamTail } from './log.js';
import { type AuditRecord, type AuditSigner, hashLine, lineHead, parseLine, signRecord } from './record.js';
import { readLastLine } from './tail.js';
import type { WalEntry } from './wal.js';

/** Where committed audit records live (a git repo; a fake in unit tests). */
export interface AuditStore {
  /** The last stored record of a stream, if any. */
  tail(stream: string): StreamTail | undefined;
  /**
   * Append the entries each stream does not have yet (idempotent by seq); returns the new heads.
   * Throws (AUDIT_UNAVAILABLE), writing nothing, when the entries would not continue a stream's
   * chain exactly: a gap in seq, a prev that is not the stored head's hash, the same seq with
   * different content, an entry whose line belongs elsewhere, or a stream name that is no stream file.
   */
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
  if (stream === CHECKPOINT_STREAM)
    return path.join(dir, part === 0 ? 'checkpoints.jsonl' : `checkpoints~${String(part).padStart(6, '0')}.jsonl`);
  return path.join(dir, 'streams', part === 0 ? `${stream}.jsonl` : `${stream}~${String(part).padStart(6, '0')}.jsonl`);
}

/** (stream, part) of a record file relative to the repo, or undefined for other files. */
export function parseStreamFile(rel: string): { stream: string; part: number } | undefined {
  const norm = rel.split(path.sep).join('/');
  const m = /^(?:streams\/(.+?)|(checkpoints))(?:~(\d{6}))?\.jsonl$/.exec(norm);
  if (!m) return undefined;
  return { stream: m[1] ?? CHECKPOINT_STREAM, part: m[3] === undefined ? 0 : Number(m[3]) };
}

/** Whether a process (a git of a gateway that was killed) still runs with its working directory in `dir` (Linux; elsewhere: unknown, false). */
function gitRunsIn(dir: string): boolean {
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((p) => /^\d+$/.test(p) && p !== String(process.pid));
  } catch {
    return false;
  }
  const real = realpathSync(dir);
  return pids.some((pid) => {
    try {
      const cwd = readlinkSync(`/proc/${pid}/cwd`);
      return cwd === real || cwd.startsWith(`${real}${path.sep}`);
    } catch {
      return false;
    }
  });
}

const GIT_LOCK_WAIT_MS = 10_000;

/** Remove the lock files a killed git leaves, after waiting (bounded) for any git still running in the repo to finish. */
async function removeStaleGitLocks(dir: string, log: (msg: string) => void): Promise<void> {
  const gitDir = path.join(dir, '.git');
  const locks = [
    ...['index.lock', 'HEAD.lock', 'config.lock', 'packed-refs.lock'].map((f) => path.join(gitDir, f)),
    ...listLocks(path.join(gitDir, 'refs')),
  ].filter((f) => existsSync(f));
  if (locks.length === 0) return;
  for (let waited = 0; waited < GIT_LOCK_WAIT_MS && gitRunsIn(dir); waited += 50)
    await new Promise((r) => setTimeout(r, 50));
  for (const f of locks) {
    if (!existsSync(f)) continue;
    rmSync(f, { force: true });
    log(
      `audit repo: removed ${path.relative(dir, f)}, left by a git that did not finish (a gateway killed mid-commit)`,
    );
  }
}

function listLocks(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? listLocks(path.join(dir, e.name)) : e.name.endsWith('.lock') ? [path.join(dir, e.name)] : [],
  );
}

/** A stream id the log writes: slash-separated path segments of safe characters, never the checkpoint stream or a part file's name. */
export function isStreamName(stream: string): boolean {
  if (stream === CHECKPOINT_STREAM || stream.length > 512) return false;
  return (
    stream.split('/').every((seg) => /^[A-Za-z0-9_.:@+-]+$/.test(seg) && seg !== '.' && seg !== '..') &&
    !/~\d{6}$/.test(stream)
  );
}

function broken(stream: string, why: string): GatewayError {
  return new GatewayError(
    'AUDIT_UNAVAILABLE',
    `audit stream ${stream}: ${why}; nothing is committed, the records stay in the write-ahead log`,
  );
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

  /**
   * `exclusive`: the caller holds the lock of the folder the repo is in, so git lock files
   * there (index.lock, ref locks) were left by a git killed with an earlier gateway: once no
   * git still runs in the repo they are removed, instead of keeping the gateway from starting.
   */
  static async open(
    dir: string,
    signer: AuditSigner,
    opts: { remote?: string; log?: (msg: string) => void; exclusive?: boolean } = {},
  ): Promise<GitAuditStore> {
    mkdirSync(dir, { recursive: true });
    const store = new GitAuditStore(dir, signer, opts.remote, opts.log ?? (() => {}));
    if (!existsSync(path.join(dir, '.git'))) await store.#git.init(['-b', 'main']);
    else if (opts.exclusive === true) await removeStaleGitLocks(dir, store.log);
    await store.#git
      .addConfig('user.name', 'gitgate')
      .addConfig('user.email', 'gitgate@localhost')
      .addConfig('commit.gpgsign', 'false');
    // A commit must be on disk before the WAL segments holding its records are deleted: git's
    // default (core.fsync=committed,-loose-object) syncs neither loose objects nor refs.
    await store.#git.addConfig('core.fsync', 'objects,reference').addConfig('core.fsyncMethod', 'fsync');
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
    let record: AuditRecord;
    try {
      record = parseLine(line).record;
    } catch (err) {
      throw new GatewayError(
        'AUDIT_UNAVAILABLE',
        `audit repo ${path.relative(this.dir, file)}: last line ${(err as Error).message}`,
      );
    }
    const t = {
      seq: record.seq,
      hash: hashLine(line),
      ...(typeof record.ts === 'string' ? { ts: record.ts } : {}),
      part,
      bytes: statSync(file).size,
    };
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
    // Check every stream first: a commit that cannot be whole writes nothing.
    const plan: {
      stream: string;
      tail: StoredTail | undefined;
      lines: string[];
      head: { seq: number; hash: string; ts: string };
    }[] = [];
    for (const [stream, list] of byStream) {
      if (!isStreamName(stream))
        throw broken(
          stream,
          `is not a stream name gitgate writes (a stream file would be ${JSON.stringify(path.relative(this.dir, streamFile(this.dir, stream)))})`,
        );
      list.sort((a, b) => a.seq - b.seq);
      const tail = this.#stored(stream);
      this.#assertUnchanged(stream, tail);
      let next = (tail?.seq ?? -1) + 1;
      let prev: string | null = tail?.hash ?? null;
      let ts = '';
      const lines: string[] = [];
      for (const e of list) {
        const head = lineHead(e.line);
        if (head === undefined || head.stream !== stream || head.seq !== e.seq || hashLine(e.line) !== e.hash) {
          throw broken(
            stream,
            `the entry for seq ${e.seq} holds ${head === undefined ? 'no record gitgate wrote' : `the record of ${JSON.stringify(head.stream)} seq ${head.seq}`}`,
          );
        }
        if (e.seq < next) {
          // Already stored (recovery after a crash mid-commit): it must be the same record.
          const same = e.seq === next - 1 ? (lines.length > 0 ? hashLine(lines.at(-1)!) : tail?.hash) : undefined;
          if (same !== undefined && same !== e.hash)
            throw broken(stream, `seq ${e.seq} is stored with another content than the write-ahead log's (a fork)`);
          continue;
        }
        if (e.seq > next) throw broken(stream, `expected seq ${next}, found ${e.seq} (a gap: records are missing)`);
        if (head.prev !== prev)
          throw broken(
            stream,
            `seq ${e.seq} does not chain to the record before it (prev ${head.prev ?? 'null'}, expected ${prev ?? 'null'})`,
          );
        lines.push(e.line);
        prev = e.hash;
        ts = head.ts;
        next = e.seq + 1;
      }
      if (lines.length > 0) plan.push({ stream, tail, lines, head: { seq: next - 1, hash: prev!, ts } });
    }
    const heads = new Map<string, StreamTail>();
    for (const { stream, tail, lines, head } of plan) {
      const at = this.#write(stream, tail, lines);
      this.#remember(stream, { ...head, ...at });
      heads.set(stream, { seq: head.seq, hash: head.hash });
    }
    return heads;
  }

  /**
   * The stream's last file is as gitgate left it (its size is what gitgate wrote, or read on
   * first use): one written behind its back is never appended to and committed as its own.
   */
  #assertUnchanged(stream: string, tail: StoredTail | undefined): void {
    if (tail === undefined) return;
    let size: number | undefined;
    try {
      size = statSync(streamFile(this.dir, stream, tail.part)).size;
    } catch {
      size = undefined;
    }
    if (size !== tail.bytes) {
      throw broken(
        stream,
        `${path.relative(this.dir, streamFile(this.dir, stream, tail.part))} was changed outside gitgate (${size ?? 'no'} bytes, gitgate wrote ${tail.bytes}); a restart puts the work tree back to the last commit`,
      );
    }
  }

  /** Forget cached tails of streams that ended (their files are read again if ever needed). */
  forget(stream: string): void {
    this.#tails.delete(stream);
  }

  async commit(heads: ReadonlyMap<string, StreamTail>, message: string): Promise<void> {
    if (heads.size > 0) {
      const prev = this.#stored(CHECKPOINT_STREAM);
      this.#assertUnchanged(CHECKPOINT_STREAM, prev);
      const now = new Date().toISOString();
      const record: AuditRecord = {
        v: 1,
        stream: CHECKPOINT_STREAM,
        seq: prev === undefined ? 0 : prev.seq + 1,
        // Never older than the checkpoint before it (a clock stepped back).
        ts: prev?.ts !== undefined && now < prev.ts ? prev.ts : now,
        prev: prev?.hash ?? null,
        type: 'checkpoint',
        data: { heads: Object.fromEntries([...heads].sort(([a], [b]) => (a < b ? -1 : 1))) },
      };
      const line = signRecord(this.signer, record);
      const at = this.#write(CHECKPOINT_STREAM, prev, [line]);
      this.#remember(CHECKPOINT_STREAM, { seq: record.seq, hash: hashLine(line), ts: record.ts, ...at });
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
