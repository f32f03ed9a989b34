import { createPublicKey, type KeyObject } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { compileSchema, formatSchemaErrors } from '../config/schema.js';
import { gitText } from '../git/run.js';
import { LogBroken as Broken, chains, listFiles } from './reader.js';
import { type AuditRecord, hashLine, parseLine, verifyParsed } from './record.js';
import { CHECKPOINT_STREAM } from './store.js';

/**
 * Verification of repos of the old format (v1: every record a JWS, checkpoints.jsonl, keys/),
 * read-only. It trusts the keys and the history the repo holds: it cannot detect a repo
 * re-signed under another key or a rewritten history. New repos are transparency logs (verify.ts).
 */

export interface OldVerifyReport {
  readonly ok: boolean;
  readonly streams: number;
  readonly records: number;
  readonly checkpoints: number;
  readonly commits: number;
  readonly keys: readonly string[];
  readonly head?: { readonly seq: number; readonly hash: string };
  readonly error?: { readonly where: string; readonly why: string };
}

/** The audit repo's published public keys (keys/<kid>.jwk) by kid. */
export function loadKeys(repo: string): Map<string, KeyObject> {
  const keys = new Map<string, KeyObject>();
  for (const f of listFiles(path.join(repo, 'keys'), '.jwk')) {
    const jwk = JSON.parse(readFileSync(f, 'utf8')) as { kid?: string; d?: unknown };
    if (jwk.d !== undefined) throw new Broken(path.relative(repo, f), 'a private key is committed to the audit repo');
    const kid = jwk.kid ?? path.basename(f, '.jwk');
    keys.set(kid, createPublicKey({ key: jwk as never, format: 'jwk' }));
  }
  return keys;
}

/** Check one chain (a stream's part files, in order); returns each line's hash by seq. */
function verifyChain(
  repo: string,
  files: readonly string[],
  stream: string,
  keys: Map<string, KeyObject>,
  onRecord: (r: AuditRecord) => void,
): string[] {
  const validRecord = compileSchema('audit-record');
  const hashes: string[] = [];
  let prev: string | null = null;
  let seq = 0;
  for (const file of files) {
    const rel = path.relative(repo, file);
    const lines = readFileSync(file, 'utf8').split('\n');
    if (lines.at(-1) === '') lines.pop();
    lines.forEach((line, i) => {
      const where = `${rel}:${i + 1}`;
      let p: ReturnType<typeof parseLine>;
      try {
        p = parseLine(line);
      } catch (err) {
        throw new Broken(where, `unreadable record (${(err as Error).message})`);
      }
      const key = keys.get(p.kid);
      if (key === undefined) throw new Broken(where, `signed with unknown key ${p.kid} (not in keys/)`);
      if (!verifyParsed(p, key)) throw new Broken(where, 'signature does not verify: the record was altered');
      const r = p.record;
      if (!validRecord(r))
        throw new Broken(
          where,
          `record does not match schemas/audit-record.schema.json (${formatSchemaErrors(validRecord.errors).slice(0, 3).join('; ')})`,
        );
      if (r.stream !== stream)
        throw new Broken(where, `record belongs to stream ${r.stream}, not ${stream}: the file was replaced or moved`);
      if (r.seq !== seq)
        throw new Broken(where, `expected seq ${seq}, found ${r.seq}: a record was removed, added or reordered`);
      if (r.prev !== prev)
        throw new Broken(where, 'prev does not match the hash of the line before it: the chain is broken');
      prev = hashLine(line);
      hashes.push(prev);
      seq++;
      onRecord(r);
    });
  }
  return hashes;
}

/** Verify an audit repo offline: signatures, chains, gap-free seq, checkpoints, and append-only git history. */
export async function verifyOldFormat(
  repo: string,
  onRecord: (r: AuditRecord) => void = () => {},
): Promise<OldVerifyReport> {
  let streams = 0;
  let records = 0;
  let checkpoints = 0;
  let commits = 0;
  let keys = new Map<string, KeyObject>();
  let head: { seq: number; hash: string } | undefined;
  try {
    keys = loadKeys(repo);
    const tails = new Map<string, string[]>();
    const all = chains(repo);
    for (const [stream, files] of [...all].filter(([s]) => s !== CHECKPOINT_STREAM)) {
      tails.set(
        stream,
        verifyChain(repo, files, stream, keys, (r) => {
          records++;
          onRecord(r);
        }),
      );
      streams++;
    }
    const cpFiles = all.get(CHECKPOINT_STREAM);
    if (cpFiles !== undefined) {
      const seen = new Map<string, { seq: number; hash: string }>();
      const hashes = verifyChain(repo, cpFiles, CHECKPOINT_STREAM, keys, (r) => {
        checkpoints++;
        const heads = (r.data?.heads ?? {}) as Record<string, { seq: number; hash: string }>;
        for (const [stream, h] of Object.entries(heads)) {
          const file = tails.get(stream);
          const where = `checkpoints.jsonl:${r.seq + 1}`;
          if (file === undefined) throw new Broken(where, `stream ${stream} is checkpointed but its file is missing`);
          if (file.length <= h.seq)
            throw new Broken(
              where,
              `stream ${stream} was truncated: checkpoint says seq ${h.seq}, the file ends at ${file.length - 1}`,
            );
          if (file[h.seq] !== h.hash)
            throw new Broken(where, `stream ${stream} record ${h.seq} differs from the checkpointed one`);
          seen.set(stream, h);
        }
      });
      if (hashes.length > 0) head = { seq: hashes.length - 1, hash: hashes.at(-1)! };
      for (const stream of tails.keys()) {
        if (!seen.has(stream))
          throw new Broken(`streams/${stream}.jsonl`, 'no checkpoint covers this stream (added outside gitgate?)');
      }
    } else if (streams > 0) {
      throw new Broken('checkpoints.jsonl', 'missing: nothing anchors the stream heads');
    }
    commits = await verifyHistory(repo);
    return { ok: true, streams, records, checkpoints, commits, keys: [...keys.keys()], ...(head ? { head } : {}) };
  } catch (err) {
    if (!(err instanceof Broken)) throw err;
    return {
      ok: false,
      streams,
      records,
      checkpoints,
      commits,
      keys: [...keys.keys()],
      error: { where: err.where, why: err.why },
    };
  }
}

/** The committed history only ever appends: no commit deletes or changes a line of a record file. */
async function verifyHistory(repo: string): Promise<number> {
  if (!existsSync(path.join(repo, '.git'))) return 0;
  const log = await gitText(repo, ['log', '--reverse', '--format=%H %P', 'HEAD']).catch(() => '');
  const commits = log.trim() === '' ? [] : log.trim().split('\n');
  for (const c of commits) {
    const [sha, parent] = c.split(' ');
    if (parent === undefined || parent === '') continue;
    const numstat = await gitText(repo, ['diff', '--numstat', parent, sha!]);
    for (const row of numstat.trim().split('\n').filter(Boolean)) {
      const [, deleted, file] = row.split('\t');
      if (
        (file!.startsWith('streams/') || file === 'checkpoints.jsonl' || file!.startsWith('keys/')) &&
        deleted !== '0'
      ) {
        throw new Broken(
          `commit ${sha!.slice(0, 12)}`,
          `removes ${deleted} line(s) from ${file}: history was rewritten`,
        );
      }
    }
  }
  return commits.length;
}
