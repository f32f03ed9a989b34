import {
  appendFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { writeFileAtomicSync } from '../atomic-file.js';
import { boundedCache } from '../cache.js';
import { type Clock, systemClock } from '../clock.js';
import { GatewayError } from '../errors.js';
import { type GitRunner, gitRunner } from '../git/helper-runner.js';
import { gitText } from '../git/run.js';
import type { StreamTail } from './log.js';
import { leafHashHex, leafHead, lineHead } from './record.js';
import { readLastLine } from './tail.js';
import { parseCheckpoint } from './tlog/note.js';
import type { WalEntry } from './wal.js';

/**
 * gitgate's settings for its audit repo, in a file of their own that `.git/config` includes: written
 * directly (once, atomically) instead of six `git config` spawns at every start.
 */
const GIT_SETTINGS = [
  '# gitgate writes this file at start; .git/config includes it',
  '[user]\n\tname = gitgate\n\temail = gitgate@localhost',
  '[commit]\n\tgpgsign = false',
  // A commit must be on disk before the WAL segments holding its records are deleted: git's
  // default (core.fsync=committed,-loose-object) syncs neither loose objects nor refs.
  // Every commit stores each touched stream file whole as a new loose object; zlib on those
  // was most of a commit's CPU (looseCompression 0). They are short-lived: gc packs them, compressed and deltified.
  '[core]\n\tfsync = objects,reference\n\tfsyncMethod = fsync\n\tlooseCompression = 0',
  '',
].join('\n');
const GIT_SETTINGS_FILE = 'gitgate.config';
const GIT_INCLUDE = `[include]\n\tpath = ${GIT_SETTINGS_FILE}\n`;

function writeGitSettings(dir: string): void {
  const gitDir = path.join(dir, '.git');
  const own = path.join(gitDir, GIT_SETTINGS_FILE);
  if (!existsSync(own) || readFileSync(own, 'utf8') !== GIT_SETTINGS) writeFileAtomicSync(own, GIT_SETTINGS);
  const config = path.join(gitDir, 'config');
  const text = readFileSync(config, 'utf8');
  // Last in the file, so these win over the same keys set elsewhere in it (an older gitgate set them one by one).
  if (!text.endsWith(GIT_INCLUDE)) {
    const rest = text.split(GIT_INCLUDE).join('');
    writeFileAtomicSync(config, `${rest}${rest === '' || rest.endsWith('\n') ? '' : '\n'}${GIT_INCLUDE}`);
  }
}

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
  /** How many leaves the stored tree has (records appended so far, committed or not). */
  treeSize(): number;
  /** Write the log's latest signed checkpoint (covering every appended record) and commit everything. */
  commit(message: string, checkpoint: string): Promise<void>;
  /** The root hash the committed checkpoint names (to check the stored-hash file against). */
  treeRoot?(): Buffer | undefined;
  /** Every stored record's leaf hash in leaf order (to rebuild the stored-hash file). */
  leafHashes?(): Buffer[];
}

/** The old format's checkpoint stream (checkpoints.jsonl): read-only. */
export const CHECKPOINT_STREAM = 'checkpoints';
/** The repo's latest signed checkpoint (a C2SP signed note), committed with every commit. */
export const CHECKPOINT_FILE = 'checkpoint';
/** The log's verifier key, for reference only: a verifier takes the key from elsewhere (`--key`). */
export const LOG_KEY_FILE = 'log.pub';

/** The size of the tree a checkpoint note names, read without checking its signature (the gateway's own repo). */
export function checkpointSize(note: string): number {
  const at = note.indexOf('\n\n');
  return parseCheckpoint(note.slice(0, at < 0 ? note.length : at + 1)).size;
}

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
async function removeStaleGitLocks(dir: string, log: (msg: string) => void, clock: Clock): Promise<void> {
  const gitDir = path.join(dir, '.git');
  const locks = [
    ...['index.lock', 'HEAD.lock', 'config.lock', 'packed-refs.lock'].map((f) => path.join(gitDir, f)),
    ...listLocks(path.join(gitDir, 'refs')),
  ].filter((f) => existsSync(f));
  if (locks.length === 0) return;
  for (let waited = 0; waited < GIT_LOCK_WAIT_MS && gitRunsIn(dir); waited += 50)
    await new Promise<void>((r) => clock.after(50, r));
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
 * checkpoint (the log's latest signed checkpoint), log.pub (its verifier key, for reference).
 */
export class GitAuditStore implements AuditStore {
  readonly #tails = boundedCache<string, StoredTail>({ max: TAIL_CACHE, ttlMs: 0 });
  /** Whether the repo has a first commit (the README goes into it). */
  #born = false;
  /** Files changed since the last commit: exactly what gets staged. */
  readonly #touched = new Set<string>();

  /** Leaves appended so far (the tree the next checkpoint must cover). */
  #size = 0;
  /** The commits' git runs, spawned by a helper process (see gitRunner), not by the gateway. */
  readonly #runner: GitRunner = gitRunner();

  private constructor(
    readonly dir: string,
    private readonly verifierKey: string,
    private readonly remote: string | undefined,
    private readonly log: (msg: string) => void,
  ) {}

  #g(args: readonly string[]): Promise<string> {
    return gitText(this.dir, args);
  }

  /** A git run of the commit path, through the helper. */
  async #run(args: readonly string[], stdin?: string): Promise<string> {
    return (await this.#runner.run(this.dir, args, stdin)).toString('utf8');
  }

  /**
   * `exclusive`: the caller holds the lock of the folder the repo is in, so git lock files
   * there (index.lock, ref locks) were left by a git killed with an earlier gateway: once no
   * git still runs in the repo they are removed, instead of keeping the gateway from starting.
   */
  /** `verifierKey`: the log's verifier key, published in the repo for reference (log.pub). */
  static async open(
    dir: string,
    verifierKey: string,
    opts: { remote?: string; log?: (msg: string) => void; exclusive?: boolean; clock?: Clock } = {},
  ): Promise<GitAuditStore> {
    mkdirSync(dir, { recursive: true });
    const store = new GitAuditStore(dir, verifierKey, opts.remote, opts.log ?? (() => {}));
    if (!existsSync(path.join(dir, '.git'))) await store.#g(['init', '-q', '-b', 'main']);
    else if (opts.exclusive === true) await removeStaleGitLocks(dir, store.log, opts.clock ?? systemClock);
    writeGitSettings(dir);
    await store.#discardUncommitted();
    if (existsSync(path.join(dir, 'checkpoints.jsonl')) || existsSync(path.join(dir, 'keys'))) {
      throw new GatewayError(
        'AUDIT_UNAVAILABLE',
        `audit repo ${dir} is of the old, signed-record format: it stays verifiable (gitgate audit verify), but new records go to a new audit.repo`,
      );
    }
    const cp = path.join(dir, CHECKPOINT_FILE);
    store.#size = existsSync(cp) ? checkpointSize(readFileSync(cp, 'utf8')) : 0;
    if (!existsSync(path.join(dir, 'README.md'))) {
      writeFileSync(
        path.join(dir, 'README.md'),
        "# gitgate audit log\n\nRecords of every MCP exchange, the leaves of a transparency log (RFC 6962 Merkle tree, C2SP signed checkpoints). Verify with `gitgate audit verify <this repo> --key <the log's verifier key> --checkpoint <a checkpoint saved earlier>`; `log.pub` is for reference only.\n",
      );
    }
    if (opts.remote !== undefined) {
      const remotes = (await store.#g(['remote'])).split('\n');
      if (!remotes.includes('origin')) await store.#g(['remote', 'add', 'origin', opts.remote]);
    }
    return store;
  }

  /**
   * Put the work tree back to the last commit. Anything appended after it
   * (possibly a line torn by a crash mid-write) is still in the WAL, which is
   * dropped only after a commit, so recovery appends it again whole.
   */
  async #discardUncommitted(): Promise<void> {
    const head = await this.#g(['rev-parse', '--verify', '-q', 'HEAD']).catch(() => '');
    if (head.trim() !== '') await this.#g(['reset', '-q', '--hard', 'HEAD']);
    await this.#g(['clean', '-q', '-f', '-d']);
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
    const record = leafHead(line);
    if (record === undefined) {
      throw new GatewayError(
        'AUDIT_UNAVAILABLE',
        `audit repo ${path.relative(this.dir, file)}: the last line is not a record gitgate writes${lineHead(line) !== undefined ? ' (it is of the old, signed-record format: give the gateway a new audit.repo; the old one stays verifiable)' : ''}`,
      );
    }
    const t = {
      seq: record.seq,
      hash: leafHashHex(line),
      ts: record.ts,
      part,
      bytes: statSync(file).size,
    };
    this.#remember(stream, t);
    return t;
  }

  /** Cache a tail; the least recently used go first past TAIL_CACHE entries (they are read from disk again). */
  #remember(stream: string, tail: StoredTail): void {
    this.#tails.set(stream, tail);
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

  treeSize(): number {
    return this.#size;
  }

  treeRoot(): Buffer | undefined {
    const cp = path.join(this.dir, CHECKPOINT_FILE);
    if (!existsSync(cp)) return undefined;
    const note = readFileSync(cp, 'utf8');
    const at = note.indexOf('\n\n');
    return parseCheckpoint(note.slice(0, at < 0 ? note.length : at + 1)).root;
  }

  leafHashes(): Buffer[] {
    const out: Buffer[] = [];
    const walk = (dir: string): void => {
      if (!existsSync(dir)) return;
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        const p = path.join(dir, e.name);
        if (e.isDirectory()) walk(p);
        else if (e.name.endsWith('.jsonl'))
          for (const line of readFileSync(p, 'utf8').split('\n')) {
            const h = line === '' ? undefined : leafHead(line);
            if (h !== undefined && h.leaf < this.#size) out[h.leaf] = Buffer.from(leafHashHex(line), 'hex');
          }
      }
    };
    walk(path.join(this.dir, 'streams'));
    for (let i = 0; i < this.#size; i++)
      if (out[i] === undefined) throw broken('(tree)', `leaf ${i} is in no stream file of the repo`);
    return out;
  }

  append(entries: readonly WalEntry[]): Map<string, StreamTail> {
    const byStream = new Map<string, WalEntry[]>();
    for (const e of entries) (byStream.get(e.stream) ?? byStream.set(e.stream, []).get(e.stream)!).push(e);
    const appended: number[] = [];
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
        const head = leafHead(e.line);
        // The entry's hash is its line's leaf hash: computed from the line by the sealer, checked
        // against it where a WAL entry is read back (wal.ts parseEntry); not hashed a third time here.
        if (head === undefined || head.stream !== stream || head.seq !== e.seq || head.leaf !== e.leaf) {
          throw broken(
            stream,
            `the entry for seq ${e.seq} holds ${head === undefined ? 'no record gitgate wrote' : `the record of ${JSON.stringify(head.stream)} seq ${head.seq}`}`,
          );
        }
        if (e.seq < next) {
          // Already stored (recovery after a crash mid-commit): it must be the same record.
          const same = e.seq === next - 1 ? (lines.length > 0 ? leafHashHex(lines.at(-1)!) : tail?.hash) : undefined;
          if (same !== undefined && same !== e.hash)
            throw broken(stream, `seq ${e.seq} is stored with another content than the write-ahead log's (a fork)`);
          if (e.leaf >= this.#size)
            throw broken(
              stream,
              `seq ${e.seq} is stored, but the write-ahead log puts it at leaf ${e.leaf}, past the tree`,
            );
          continue;
        }
        if (e.seq > next) throw broken(stream, `expected seq ${next}, found ${e.seq} (a gap: records are missing)`);
        if (head.prev !== prev)
          throw broken(
            stream,
            `seq ${e.seq} does not chain to the record before it (prev ${head.prev ?? 'null'}, expected ${prev ?? 'null'})`,
          );
        lines.push(e.line);
        appended.push(e.leaf);
        prev = e.hash;
        ts = head.ts;
        next = e.seq + 1;
      }
      if (lines.length > 0) plan.push({ stream, tail, lines, head: { seq: next - 1, hash: prev!, ts } });
    }
    // The new records continue the log's tree exactly: leaves size, size+1, … with none missing.
    appended.sort((a, b) => a - b);
    appended.forEach((leaf, i) => {
      if (leaf !== this.#size + i)
        throw broken(
          '(tree)',
          `leaf ${leaf} does not continue the log's tree of ${this.#size + i} (records are missing before it, or a leaf is used twice)`,
        );
    });
    const heads = new Map<string, StreamTail>();
    for (const { stream, tail, lines, head } of plan) {
      const at = this.#write(stream, tail, lines);
      this.#remember(stream, { ...head, ...at });
      heads.set(stream, { seq: head.seq, hash: head.hash });
    }
    this.#size += appended.length;
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

  async commit(message: string, checkpoint: string): Promise<void> {
    const size = checkpointSize(checkpoint);
    if (size !== this.#size)
      throw broken('(tree)', `the checkpoint covers ${size} record(s), the repo holds ${this.#size}`);
    const cpFile = path.join(this.dir, CHECKPOINT_FILE);
    if (!existsSync(cpFile) || readFileSync(cpFile, 'utf8') !== checkpoint) {
      writeFileSync(cpFile, checkpoint);
      this.#touched.add(CHECKPOINT_FILE);
    }
    const keyFile = path.join(this.dir, LOG_KEY_FILE);
    if (!existsSync(keyFile) || readFileSync(keyFile, 'utf8') !== `${this.verifierKey}\n`) {
      writeFileSync(keyFile, `${this.verifierKey}\n`);
      this.#touched.add(LOG_KEY_FILE);
    }
    if (!this.#born) {
      this.#born = (await this.#run(['rev-parse', '--verify', '-q', 'HEAD']).catch(() => '')).trim() !== '';
      if (!this.#born) this.#touched.add('README.md');
    }
    if (this.#touched.size === 0) return;
    // Stage exactly what changed: paths on stdin to update-index, so no tree scan and no
    // pathspec matching (`git add` of N paths matches each against every index entry).
    const files = [...this.#touched].filter((f) => existsSync(path.join(this.dir, f)));
    await this.#run(['update-index', '--add', '-z', '--stdin'], `${files.join('\0')}\0`);
    await this.#run(['commit', '-q', '-m', message]);
    this.#touched.clear();
    this.#born = true;
    if (this.remote !== undefined) {
      try {
        await this.#run(['push', '-q', 'origin', 'HEAD']);
      } catch (err) {
        // Committed locally; the push is retried with the next commit.
        this.log(`audit push failed: ${(err as Error).message}`);
      }
    }
  }
}
