import { existsSync } from 'node:fs';
import path from 'node:path';
import {
  blobId,
  isOldFormat,
  LogBroken,
  type LogContents,
  listFiles,
  objectFormat,
  openGivenCheckpoint,
  readLog,
  repoCheckpoint,
  rootOf,
  workTreeVersusHead,
} from './reader.js';
import type { AuditRecord } from './record.js';
import type { NoteVerifier } from './tlog/note.js';
import { verifyOldFormat } from './verify-v1.js';

export { listFiles };

export interface VerifyOptions {
  /** The log's verifier keys the caller trusts (`--key`, or pinned in config); keys in the repo count for nothing. */
  readonly keys: readonly NoteVerifier[];
  /** A checkpoint note saved earlier (by an auditor, a monitor, an anchor): the repo must extend it. */
  readonly checkpoint?: string;
  /**
   * Check a repo of the old format against the keys it holds itself even though keys are given
   * (without it, given keys refuse such a repo: they sign nothing in it). Never with `checkpoint`.
   */
  readonly allowOldFormat?: boolean;
}

export interface VerifyReport {
  readonly ok: boolean;
  /** 2: a transparency log; 1: the old format (read-only, trusts the repo's own keys and history). */
  readonly format: 1 | 2;
  readonly streams: number;
  readonly records: number;
  /** The repo's signed checkpoint (tree size, root, note), to keep and compare with an anchor. */
  readonly checkpoint?: { readonly size: number; readonly root: string; readonly note: string };
  /** What this verification could not show. */
  readonly warnings: readonly string[];
  /** The first problem found: where and why. */
  readonly error?: { readonly where: string; readonly why: string };
}

export const NO_CHECKPOINT_WARNING =
  'no --checkpoint given: this proves the repo is one signed log, not that it is the log you saw before; a history rewrite (reset, orphan history, a repo re-signed under the same key) cannot be detected';

/**
 * Verify an audit repo offline, trusting only the given keys:
 * the work tree is exactly HEAD (each file's git blob id), every record line is read and checked
 * (layout, schema, stream, seq, prev, unique leaf), the leaves 0..N-1 all exist, the repo's
 * checkpoint is signed by a given key and names exactly that tree, and a saved checkpoint (when
 * given) is signed by a given key and is the tree of the repo's first records. History is not
 * consulted: what HEAD holds is what is proved, so no merge or first-parent trick hides anything.
 */
export async function verifyAuditRepo(
  repo: string,
  opts: VerifyOptions,
  onRecord: (r: AuditRecord) => void = () => {},
): Promise<VerifyReport> {
  if (isOldFormat(repo)) {
    // The old format trusts the repo's own keys: what the caller pinned cannot hold it to anything, so
    // a repo rewritten into the old format (forged records, a key of its own) must not pass for the log.
    const refuse = (where: string, why: string): VerifyReport => ({
      ok: false,
      format: 1,
      streams: 0,
      records: 0,
      warnings: [],
      error: { where, why },
    });
    if (opts.checkpoint !== undefined)
      return refuse(
        '--checkpoint',
        'the saved checkpoint is of a transparency log, and this repo is in the old format (signed records, keys/ in the repo), which has none: the log it was taken from is not this repo (replaced, or rewritten into the old format)',
      );
    if (opts.keys.length > 0 && opts.allowOldFormat !== true)
      return refuse(
        '--key',
        `this repo is in the old format (records signed by the keys/ it holds itself): ${opts.keys.map((k) => k.name).join(', ')} signs nothing in it, so it proves nothing, and a repo rewritten into the old format looks the same. --allow-old-format checks it against its own keys (self-consistency only)`,
      );
    const old = await verifyOldFormat(repo, onRecord);
    return {
      ok: old.ok,
      format: 1,
      streams: old.streams,
      records: old.records,
      warnings: [
        'old-format repo (signed records, keys/ in the repo): verified read-only against the keys it holds itself; a re-signed repo or a rewritten history cannot be detected',
      ],
      ...(old.error !== undefined ? { error: old.error } : {}),
    };
  }
  let streams = 0;
  let records = 0;
  const warnings: string[] = [];
  try {
    if (opts.keys.length === 0)
      throw new LogBroken('--key', "no verifier key given: keys in the repo are not trusted; pass the log's key");
    const isGit = existsSync(path.join(repo, '.git'));
    if (!isGit) warnings.push('not a git repository: the files were verified, no commit was');
    // Each record file is read once: its records are checked and its blob id computed from the same bytes.
    const format = isGit ? await objectFormat(repo) : undefined;
    const ids = new Map<string, string>();
    let log: LogContents | undefined;
    let broken: LogBroken | undefined;
    try {
      log = readLog(
        repo,
        (r) => {
          records++;
          onRecord(r);
        },
        format === undefined ? undefined : (rel, data) => ids.set(rel, blobId(format, data)),
      );
    } catch (err) {
      if (!(err instanceof LogBroken)) throw err;
      broken = err;
    }
    // The work tree must be HEAD before anything in it counts (this is said first, whatever else is wrong).
    if (isGit) {
      const diff = await workTreeVersusHead(repo, ids);
      if (diff !== undefined) {
        records = 0;
        throw new LogBroken('work tree', `${diff}: verify a clean checkout of HEAD (the work tree must be HEAD)`);
      }
    }
    if (broken !== undefined || log === undefined) throw broken;
    streams = log.streams;
    const cp = repoCheckpoint(repo, opts.keys);
    if (cp.size !== log.records)
      throw new LogBroken(
        'checkpoint',
        `signed for a tree of ${cp.size} record(s), the repo holds ${log.records}: records were ${cp.size > log.records ? 'removed' : 'added'}`,
      );
    const root = rootOf(log, cp.size);
    if (!root.equals(cp.root))
      throw new LogBroken('checkpoint', "the records' tree hash differs from the signed one: records were altered");
    if (opts.checkpoint !== undefined) {
      const old = openGivenCheckpoint(opts.checkpoint, opts.keys, '--checkpoint');
      if (old.origin !== cp.origin)
        throw new LogBroken('--checkpoint', `is of log ${old.origin}, the repo is log ${cp.origin}`);
      if (old.size > cp.size)
        throw new LogBroken(
          '--checkpoint',
          `the saved checkpoint covers ${old.size} record(s), the repo only ${cp.size}: records were removed (history cut or rewritten)`,
        );
      if (!rootOf(log, old.size).equals(old.root))
        throw new LogBroken(
          '--checkpoint',
          `the repo's first ${old.size} record(s) are not the ones the saved checkpoint signed: history was rewritten`,
        );
    } else warnings.push(NO_CHECKPOINT_WARNING);
    if (cp.unknown.length > 0)
      warnings.push(`the checkpoint also carries signatures by keys not given (ignored): ${cp.unknown.join(', ')}`);
    return {
      ok: true,
      format: 2,
      streams,
      records,
      checkpoint: { size: cp.size, root: cp.root.toString('base64'), note: cp.note },
      warnings,
    };
  } catch (err) {
    if (!(err instanceof LogBroken)) throw err;
    return { ok: false, format: 2, streams, records, warnings, error: { where: err.where, why: err.why } };
  }
}
