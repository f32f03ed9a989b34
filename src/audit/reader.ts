import { createHash } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { compileSchema, formatSchemaErrors } from '../config/schema.js';
import { gitText } from '../git/run.js';
import { lexists, readRepoFile, UntrustedFileError, walkRepoFiles } from '../repo-file.js';
import { type AuditRecord, leafHead, parseLine } from './record.js';
import { CHECKPOINT_FILE, CHECKPOINT_STREAM, checkpointSize, LOG_KEY_FILE, parseStreamFile } from './store.js';
import { Frontier, HASH_BYTES, type Hash, leafHash } from './tlog/merkle.js';
import { type NoteVerifier, openCheckpoint, parseVerifierKey, type SignedCheckpoint } from './tlog/note.js';

/**
 * The one reader of audit repos: where files live (with store.ts's streamFile), how a
 * record line is parsed and checked, how the records make the log's tree, and how a
 * checkpoint is opened. Used by verify, replay, export, prove and the policy impact replay.
 */

/** A problem found in a repo: where (file:line, or what) and why. */
export class LogBroken extends Error {
  constructor(
    readonly where: string,
    readonly why: string,
  ) {
    super(`${where}: ${why}`);
  }
}

/** The record a stored line holds: a v2 line is the record; a v1 line wraps it with its JWS. */
export function recordOf(line: string): AuditRecord {
  if (line.startsWith('{"jws":')) return parseLine(line).record;
  const r = JSON.parse(line) as unknown;
  if (r === null || typeof r !== 'object' || Array.isArray(r)) throw new Error('record is not a JSON object');
  return r as AuditRecord;
}

/** The most bytes one file of an audit repo may hold (a part is 128 KiB, one record rarely more): larger is refused unread. */
export const MAX_REPO_FILE_BYTES = 64 * 1024 * 1024;
/** A checkpoint note or a verifier key is a few lines. */
const MAX_NOTE_BYTES = 64 * 1024;

/**
 * A file of the repo, read: a regular file of at most `max` bytes, else a LogBroken naming it (a
 * symlink to /dev/zero or to a file elsewhere is never followed). `rel`: its name in the repo.
 */
export function readRepoText(file: string, rel: string, max = MAX_REPO_FILE_BYTES): Buffer {
  try {
    return readRepoFile(file, max, rel);
  } catch (err) {
    if (err instanceof UntrustedFileError) throw new LogBroken(err.file, err.why);
    throw err;
  }
}

/**
 * Every file below `dir` (git's own folder aside), relative to it, sorted: regular files only. A
 * symlink, a FIFO or a device anywhere below is a LogBroken naming it (relative to `root`), so
 * whatever reads the listed files reads regular files only.
 */
function repoFiles(dir: string, root: string): string[] {
  if (!existsSync(dir)) return [];
  try {
    return walkRepoFiles(
      dir,
      { maxFiles: Number.POSITIVE_INFINITY, maxBytes: Number.POSITIVE_INFINITY },
      path.relative(root, dir),
    );
  } catch (err) {
    if (err instanceof UntrustedFileError) throw new LogBroken(err.file, err.why);
    throw err;
  }
}

/** The files named `*<ext>` below `dir` (full paths, sorted); see repoFiles for what is refused. */
export function listFiles(dir: string, ext: string, root = dir): string[] {
  return repoFiles(dir, root)
    .filter((f) => f.endsWith(ext))
    .map((f) => path.join(dir, f));
}

/** Record files grouped by stream, parts in order (the old format's checkpoints.jsonl included, as its own stream). */
export function chains(repo: string): Map<string, string[]> {
  const out = new Map<string, { part: number; file: string }[]>();
  // Every file of the repo is looked at (none may be a link); the record files are those parseStreamFile names.
  const all = listFiles(repo, '.jsonl');
  for (const file of all) {
    const id = parseStreamFile(path.relative(repo, file));
    if (id === undefined) continue;
    (out.get(id.stream) ?? out.set(id.stream, []).get(id.stream)!).push({ part: id.part, file });
  }
  const sorted = new Map<string, string[]>();
  for (const [stream, parts] of out) {
    parts.sort((a, b) => a.part - b.part);
    parts.forEach((p, i) => {
      if (p.part !== i) throw new LogBroken(path.relative(repo, p.file), `part ${i} of stream ${stream} is missing`);
    });
    sorted.set(
      stream,
      parts.map((p) => p.file),
    );
  }
  return sorted;
}

/** Whether a repo is of the old format (JWS-signed records, checkpoints.jsonl, keys/): read-only. */
export function isOldFormat(repo: string): boolean {
  return (
    !existsSync(path.join(repo, CHECKPOINT_FILE)) &&
    (existsSync(path.join(repo, 'checkpoints.jsonl')) || existsSync(path.join(repo, 'keys')))
  );
}

/** The log's records as a repo holds them: counted, checked, and their leaf hashes in leaf order. */
export interface LogContents {
  readonly streams: number;
  readonly records: number;
  /** Leaf hashes, 32 bytes each, in leaf order (records leaves). */
  readonly leaves: Buffer;
}

/** The root of the tree of the first `size` leaves. */
export function rootOf(contents: LogContents, size: number): Hash {
  const f = new Frontier();
  for (let i = 0; i < size; i++) f.append(contents.leaves.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES));
  return f.root();
}

/**
 * Every record line of a repo (v2), read and checked; `onRecord` sees each in stream order,
 * `onFile` each record file's bytes as read (so a caller that also hashes the files reads each once).
 * Memory: one file at a time, 32 bytes per leaf and a byte per possible leaf, nothing per record besides.
 */
export function readLog(
  repo: string,
  onRecord: (r: AuditRecord, line: string) => void = () => {},
  onFile?: (rel: string, data: Buffer) => void,
): LogContents {
  const validRecord = compileSchema('audit-record');
  const all = chains(repo);
  if (all.has(CHECKPOINT_STREAM))
    throw new LogBroken('checkpoints.jsonl', 'a file of the old format in a repo of the new one');
  let bytes = 0;
  for (const files of all.values()) for (const f of files) bytes += statSync(f).size;
  // A record line is never shorter than this: a leaf index beyond what the files could hold is refused unread.
  const maxLeaves = Math.ceil(bytes / 60) + 1;
  // Sized from the size the repo's checkpoint claims (unchecked, only so the buffer need not grow by copies).
  let leaves = Buffer.alloc(HASH_BYTES * Math.min(maxLeaves, Math.max(1024, claimedSize(repo))));
  /** One bit per possible leaf: whether a record holds it. */
  const seen = new Uint8Array(Math.ceil(maxLeaves / 8));
  const has = (leaf: number) => (seen[Math.floor(leaf / 8)]! & (1 << (leaf % 8))) !== 0;
  let records = 0;
  for (const [stream, files] of all) {
    let prev: string | null = null;
    let seq = 0;
    for (const file of files) {
      const rel = path.relative(repo, file);
      const data = readRepoText(file, rel);
      onFile?.(rel, data);
      // Line by line over the bytes: a leaf is the hash of the line's exact bytes, as stored.
      for (let start = 0, n = 1; start < data.length; n++) {
        const nl = data.indexOf(0x0a, start);
        const bytes = data.subarray(start, nl < 0 ? data.length : nl);
        start = nl < 0 ? data.length : nl + 1;
        const line = bytes.toString('utf8');
        const where = `${rel}:${n}`;
        let r: AuditRecord;
        try {
          r = JSON.parse(line) as AuditRecord;
        } catch {
          throw new LogBroken(where, 'not valid JSON: the line was altered');
        }
        const head = leafHead(line);
        if (head === undefined)
          throw new LogBroken(
            where,
            line.startsWith('{"jws":')
              ? 'a record of the old, signed format in a repo of the new one'
              : 'not a record as gitgate writes them (v2 layout)',
          );
        if (!validRecord(r))
          throw new LogBroken(
            where,
            `record does not match schemas/audit-record.schema.json (${formatSchemaErrors(validRecord.errors).slice(0, 3).join('; ')})`,
          );
        if (head.stream !== stream)
          throw new LogBroken(
            where,
            `record belongs to stream ${head.stream}, not ${stream}: the file was replaced or moved`,
          );
        if (head.seq !== seq)
          throw new LogBroken(
            where,
            `expected seq ${seq}, found ${head.seq}: a record was removed, added or reordered`,
          );
        if (head.prev !== prev)
          throw new LogBroken(where, 'prev does not match the leaf hash of the record before it: the chain is broken');
        if (head.leaf >= maxLeaves) throw new LogBroken(where, `leaf ${head.leaf} is beyond any tree these files make`);
        if (has(head.leaf))
          throw new LogBroken(
            where,
            `leaf ${head.leaf} is also ${firstHolder(repo, all, head.leaf) ?? 'elsewhere'}: a record was copied`,
          );
        seen[Math.floor(head.leaf / 8)]! |= 1 << (head.leaf % 8);
        const h = leafHash(bytes);
        if ((head.leaf + 1) * HASH_BYTES > leaves.length) {
          const grown = Buffer.alloc(
            Math.min(maxLeaves * HASH_BYTES, Math.max(leaves.length * 2, (head.leaf + 1) * HASH_BYTES)),
          );
          leaves.copy(grown);
          leaves = grown;
        }
        h.copy(leaves, head.leaf * HASH_BYTES);
        prev = h.toString('hex');
        seq++;
        records++;
        onRecord(r, line);
      }
    }
  }
  for (let i = 0; i < records; i++)
    if (!has(i)) throw new LogBroken(`leaf ${i}`, 'no record holds this leaf: a record was removed');
  return { streams: all.size, records, leaves: leaves.subarray(0, records * HASH_BYTES) };
}

/** The tree size the repo's checkpoint names, unchecked (0 when it has none that parses). */
function claimedSize(repo: string): number {
  try {
    return checkpointSize(
      readRepoText(path.join(repo, CHECKPOINT_FILE), CHECKPOINT_FILE, MAX_NOTE_BYTES).toString('utf8'),
    );
  } catch {
    return 0;
  }
}

/** Where the first line holding `leaf` is (read again: only a copied record asks, once). */
function firstHolder(repo: string, all: Map<string, string[]>, leaf: number): string | undefined {
  for (const files of all.values())
    for (const file of files) {
      const lines = readRepoText(file, path.relative(repo, file)).toString('utf8').split('\n');
      for (let i = 0; i < lines.length; i++)
        if (leafHead(lines[i]!)?.leaf === leaf) return `${path.relative(repo, file)}:${i + 1}`;
    }
  return undefined;
}

/** Open a checkpoint note with the given keys, naming what is wrong. */
export function openGivenCheckpoint(note: string, keys: readonly NoteVerifier[], what: string): SignedCheckpoint {
  try {
    return openCheckpoint(note, keys);
  } catch (err) {
    throw new LogBroken(what, (err as Error).message);
  }
}

/** The repo's committed checkpoint file, opened with the given keys. */
export function repoCheckpoint(repo: string, keys: readonly NoteVerifier[]): SignedCheckpoint {
  const file = path.join(repo, CHECKPOINT_FILE);
  if (!lexists(file)) throw new LogBroken(CHECKPOINT_FILE, 'missing: nothing signs the log');
  return openGivenCheckpoint(
    readRepoText(file, CHECKPOINT_FILE, MAX_NOTE_BYTES).toString('utf8'),
    keys,
    CHECKPOINT_FILE,
  );
}

/** The object format of a repo's git objects (what its blob ids are hashes of). */
export async function objectFormat(repo: string): Promise<'sha1' | 'sha256'> {
  const format = (await gitText(repo, ['rev-parse', '--show-object-format']).catch(() => 'sha1\n')).trim();
  return format === 'sha256' ? 'sha256' : 'sha1';
}

/** A file's git blob id. */
export function blobId(format: 'sha1' | 'sha256', data: Buffer): string {
  return createHash(format).update(`blob ${data.length}\0`).update(data).digest('hex');
}

/**
 * How the work tree differs from HEAD (git's blob ids of every file but .git), or undefined when it does not.
 * `known`: blob ids already computed from the files' bytes (by a reader that read them anyway), by path
 * relative to the repo; the other files are read here. A link or other non-regular file, in HEAD or
 * in the work tree, is a LogBroken naming it.
 */
export async function workTreeVersusHead(
  repo: string,
  known: ReadonlyMap<string, string> = new Map(),
): Promise<string | undefined> {
  const format = await objectFormat(repo);
  const head = await gitText(repo, ['ls-tree', '-r', '-z', '--full-tree', 'HEAD']).catch(() => undefined);
  if (head === undefined) return existsSync(path.join(repo, CHECKPOINT_FILE)) ? 'HEAD has no commit' : undefined;
  const inHead = new Map<string, string>();
  for (const row of head.split('\0')) {
    if (row === '') continue;
    const tab = row.indexOf('\t');
    const [mode, type, id] = row.slice(0, tab).split(' ');
    if (type !== 'blob') return `HEAD holds a ${type} at ${row.slice(tab + 1)}`;
    // Not a work-tree difference: what HEAD holds is what is proved, and it may hold regular files only.
    if (mode !== '100644' && mode !== '100755')
      throw new LogBroken(
        row.slice(tab + 1),
        `is ${mode === '120000' ? 'a symbolic link' : `an entry of mode ${mode}`} in HEAD: an audit repo holds regular files only`,
      );
    inHead.set(row.slice(tab + 1), id!);
  }
  const inTree = new Map<string, string>();
  for (const rel of repoFiles(repo, repo))
    inTree.set(rel, known.get(rel) ?? blobId(format, readRepoText(path.join(repo, rel), rel)));
  for (const [f, id] of inTree) {
    const h = inHead.get(f);
    if (h === undefined) return `${f} is in the work tree but not in HEAD`;
    if (h !== id) return `${f} differs from HEAD`;
  }
  for (const f of inHead.keys()) if (!inTree.has(f)) return `${f} is in HEAD but not in the work tree`;
  return undefined;
}

/**
 * Whether the repo's records make exactly the tree its checkpoint signs, with the key the repo
 * itself names (log.pub). Not a proof (the repo chooses that key; `audit verify --key` proves):
 * what a report such as the policy impact replay may rest on.
 */
export function selfConsistent(repo: string): boolean {
  try {
    const key = parseVerifierKey(
      readRepoText(path.join(repo, LOG_KEY_FILE), LOG_KEY_FILE, MAX_NOTE_BYTES).toString('utf8'),
    );
    const log = readLog(repo);
    const cp = repoCheckpoint(repo, [key]);
    return cp.size === log.records && rootOf(log, cp.size).equals(cp.root);
  } catch {
    return false;
  }
}
