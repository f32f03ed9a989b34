import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { auditLogDirs } from '../audit/branches.js';
import {
  ApprovalIndex,
  describeRecord,
  type RecordFilter,
  readRecords,
  readTimeline,
  sinceToIso,
} from '../audit/read.js';
import { readLog, repoCheckpoint } from '../audit/reader.js';
import { latestCheckpointFile } from '../audit/sealer-port.js';
import { CHECKPOINT_FILE } from '../audit/store.js';
import { HashFile } from '../audit/tlog/hash-file.js';
import {
  consistencyProof,
  Frontier,
  HASH_BYTES,
  inclusionProof,
  leafHash,
  type SubtreeReader,
  storedHashIndex,
  treeHash,
} from '../audit/tlog/merkle.js';
import {
  MAX_NOTE_BYTES,
  type NoteVerifier,
  openCheckpoint,
  parseCheckpoint,
  parseVerifierKey,
} from '../audit/tlog/note.js';
import { MAX_BUNDLE_BYTES, makeBundle, verifyBundle } from '../audit/tlog/proof.js';
import { logKeyOf } from '../audit/trail.js';
import { verifyAuditRepo } from '../audit/verify.js';
import { loadConfig } from '../config/load.js';
import { printable } from '../printable.js';

/** Verifier keys from `--key` values: a verifier key itself, or a file holding one per line. */
function verifierKeys(values: readonly string[]): NoteVerifier[] {
  return values.flatMap((v) => {
    const text = existsSync(v) && statSync(v).isFile() ? readFileSync(v, 'utf8') : v;
    return text
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '' && !l.startsWith('#'))
      .map((l) => parseVerifierKey(l));
  });
}

function readBounded(file: string, max = MAX_BUNDLE_BYTES): string {
  if (statSync(file).size >= max) throw new Error(`${file} is too large`);
  return readFileSync(file, 'utf8');
}

/**
 * `gitgate audit verify <repo>...`: each repo on its own (a replica's log: its records, tree and checkpoint
 * signed by one of the given keys), then, with several (one per replica), a summary over all of them. Two repos
 * that are the same log (one origin) fail: a replica's log passed twice must not stand in for another's.
 */
export async function auditVerify(
  repos: readonly string[],
  opts: { key?: readonly string[]; checkpoint?: string; config?: string; allowOldFormat?: boolean },
  out: (line: string) => void,
): Promise<number> {
  if (repos.length === 0) throw new Error('no audit repo given');
  // A shared audit repo (multi-replica mode) stands for each replica's branch of it.
  const { logs, cleanup } = await auditLogDirs(repos);
  try {
    return await verifyLogs(logs, opts, out);
  } finally {
    cleanup();
  }
}

async function verifyLogs(
  repos: readonly { readonly dir: string; readonly name: string }[],
  opts: { key?: readonly string[]; checkpoint?: string; config?: string; allowOldFormat?: boolean },
  out: (line: string) => void,
): Promise<number> {
  if (repos.length > 1 && opts.checkpoint !== undefined)
    throw new Error('--checkpoint names one log: verify that repo on its own with it');
  // Keys pinned in a config file (audit.keys) count as given, as --key does.
  const pinned = opts.config !== undefined ? loadConfig(opts.config).audit.keys : [];
  const keys = verifierKeys([...(opts.key ?? []), ...pinned]);
  const several = repos.length > 1;
  const origins = new Map<string, string>();
  let failed = 0;
  let records = 0;
  let streams = 0;
  for (const { dir, name: repo } of repos) {
    const report = await verifyAuditRepo(dir, {
      keys,
      ...(opts.checkpoint !== undefined ? { checkpoint: readBounded(opts.checkpoint, MAX_NOTE_BYTES) } : {}),
      ...(opts.allowOldFormat === true ? { allowOldFormat: true } : {}),
    });
    const where = several ? `${repo}: ` : '';
    if (!report.ok) {
      failed++;
      out(`${where}FAILED at ${report.error!.where}: ${report.error!.why}`);
      out(`${where}(checked before the failure: ${report.records} record(s) in ${report.streams} stream(s))`);
      continue;
    }
    const origin = report.checkpoint !== undefined ? report.checkpoint.note.split('\n')[0]! : undefined;
    const twin = origin !== undefined ? origins.get(origin) : undefined;
    if (origin !== undefined && twin !== undefined) {
      failed++;
      out(
        `${where}FAILED at ${CHECKPOINT_FILE}: the same log (${origin}) as ${twin}: each replica's log is given once`,
      );
      continue;
    }
    if (origin !== undefined) origins.set(origin, repo);
    records += report.records;
    streams += report.streams;
    out(
      `${where}ok: ${report.records} record(s) in ${report.streams} stream(s)${report.checkpoint !== undefined ? `, tree size ${report.checkpoint.size}, root ${report.checkpoint.root}` : ''}${opts.checkpoint !== undefined && report.format === 2 ? ', consistent with the saved checkpoint' : ''}`,
    );
    for (const w of report.warnings) out(`${where}warning: ${w}`);
  }
  // Each key given stands for a replica's log: one that signed none of them (all of them verified) is a
  // log gone missing (a deleted replica branch), unless the key is dropped from the command.
  const missing = several && failed === 0 ? keys.filter((k) => !origins.has(k.name)).map((k) => k.name) : [];
  for (const name of missing)
    out(
      `FAILED: no log given is signed by the key of ${name}: that replica's log is missing (a deleted branch?), or drop its --key`,
    );
  if (missing.length > 0) return 1;
  if (several)
    out(
      failed === 0
        ? `ok: ${repos.length} log(s), ${records} record(s) in ${streams} stream(s)`
        : `FAILED: ${failed} of ${repos.length} log(s)`,
    );
  return failed === 0 ? 0 : 1;
}

/** `gitgate audit checkpoint`: the latest signed checkpoint of a repo, or the one the gateway signed last in a data dir. */
export async function auditCheckpoint(
  opts: { dataDir?: string; repo?: string },
  out: (line: string) => void,
): Promise<number> {
  const file =
    opts.dataDir !== undefined
      ? latestCheckpointFile(path.join(path.resolve(opts.dataDir), 'audit-wal'))
      : path.join(path.resolve(opts.repo ?? '.'), CHECKPOINT_FILE);
  if (!existsSync(file)) throw new Error(`no checkpoint at ${file}`);
  out(readBounded(file, MAX_NOTE_BYTES).replace(/\n$/, ''));
  return 0;
}

/** `gitgate audit public-key`: the log's verifier key (what --key takes). */
export async function auditPublicKey(opts: { dataDir?: string }, out: (line: string) => void): Promise<number> {
  out((await logKeyOf(path.resolve(opts.dataDir ?? '.gitgate'), false)).verifier.text);
  return 0;
}

/** The leaf hashes of a repo as a subtree reader: its stored hashes built once (O(n)), then each read O(1). */
function memoryTree(leaves: Buffer): SubtreeReader {
  const f = new Frontier();
  const stored: Buffer[] = [];
  for (let i = 0; i * HASH_BYTES < leaves.length; i++)
    stored.push(...f.append(leaves.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES)));
  return (level, index) => {
    const h = stored[storedHashIndex(level, index)];
    if (h === undefined) throw new Error(`subtree ${level}/${index} is not in the tree`);
    return h;
  };
}

/** Where a gateway keeps the stored hashes of the repo at <data dir>/audit: <data dir>/audit-wal/tree.hashes. */
export function defaultHashFile(repo: string): string {
  return path.join(path.dirname(repo), 'audit-wal', 'tree.hashes');
}

/** Subtree hashes for proofs over a tree of `size` leaves with root `root`, and how many were read. */
export interface ProofTree {
  readonly read: SubtreeReader;
  /** `stored`: from the stored-hash file (O(log n) reads a proof); `records`: from every record's leaf hash. */
  readonly source: 'stored' | 'records';
  reads(): number;
  close(): void;
}

/**
 * The stored-hash file when it holds the tree the checkpoint signs (its root over `size` leaves is the
 * checkpoint's; the file may run ahead, with WAL leaves not yet committed), else the leaves of the records.
 */
export function proofTree(file: string | undefined, size: number, root: Buffer, leaves: () => Buffer): ProofTree {
  let n = 0;
  if (file !== undefined && existsSync(file)) {
    const hf = HashFile.openReadOnly(file);
    const read: SubtreeReader = (level, index) => {
      n++;
      return hf.read(level, index);
    };
    if (hf.size >= size && treeHash(read, size).equals(root)) {
      n = 0;
      return { read, source: 'stored', reads: () => n, close: () => hf.close() };
    }
    hf.close();
  }
  const mem = memoryTree(leaves());
  return {
    read: (level, index) => {
      n++;
      return mem(level, index);
    },
    source: 'records',
    reads: () => n,
    close: () => undefined,
  };
}

/** The (unverified) checkpoint of a signed note: its text up to the signatures. */
function checkpointOf(note: string) {
  const at = note.indexOf('\n\n');
  return parseCheckpoint(note.slice(0, at < 0 ? note.length : at + 1));
}

/** `gitgate audit prove`: one proof bundle per record of an exchange (or the record at a leaf index), JSON Lines. */
export async function auditProve(
  target: string,
  opts: { repo: string; key?: readonly string[]; hashes?: string },
  out: (line: string) => void,
  onTree: (tree: ProofTree) => void = () => undefined,
): Promise<number> {
  const repo = path.resolve(opts.repo);
  const byLeaf = /^\d+$/.test(target) ? Number(target) : undefined;
  const found: { line: string; leaf: number }[] = [];
  const log = readLog(repo, (r, line) => {
    if (byLeaf !== undefined ? r.leaf === byLeaf : r.exchange === target) found.push({ line, leaf: r.leaf! });
  });
  const keys = verifierKeys(opts.key ?? []);
  const note = readBounded(path.join(repo, CHECKPOINT_FILE), MAX_NOTE_BYTES);
  const signed = keys.length > 0 ? repoCheckpoint(repo, keys) : checkpointOf(note);
  const size = signed.size;
  if (size !== log.records) throw new Error(`the repo's checkpoint covers ${size} record(s), its files ${log.records}`);
  if (found.length === 0)
    throw new Error(`no record ${byLeaf !== undefined ? `at leaf ${byLeaf}` : `of exchange ${target}`}`);
  const tree = proofTree(opts.hashes ?? defaultHashFile(repo), size, signed.root, () => log.leaves);
  try {
    for (const f of found.sort((a, b) => a.leaf - b.leaf)) {
      if (!tree.read(0, f.leaf).equals(leafHash(f.line)))
        throw new Error(`the record at leaf ${f.leaf} is not the leaf the log's tree holds there`);
      out(JSON.stringify(makeBundle(f.line, f.leaf, inclusionProof(tree.read, f.leaf, size), note)));
    }
    onTree(tree);
  } finally {
    tree.close();
  }
  return 0;
}

/** `gitgate audit verify-proof`: check each bundle (one per line) offline against the given keys. */
export async function auditVerifyProof(
  bundle: string,
  opts: { key?: readonly string[] },
  out: (line: string) => void,
): Promise<number> {
  const keys = verifierKeys(opts.key ?? []);
  if (keys.length === 0)
    throw new Error('no verifier key given (--key): a proof is only as good as the key it is checked with');
  let bad = 0;
  const lines = readBounded(bundle)
    .split('\n')
    .filter((l) => l.trim() !== '');
  lines.forEach((l, i) => {
    try {
      const p = verifyBundle(l, keys);
      const r = p.record as { exchange?: string; type?: string; stream?: string };
      out(
        `ok: leaf ${p.leaf} (${r.type ?? '?'}${r.exchange !== undefined ? ` of exchange ${r.exchange}` : ''}) is in the log ${p.checkpoint.origin} of ${p.checkpoint.size} record(s), signed by ${p.checkpoint.verifiedBy.join(', ')}`,
      );
    } catch (err) {
      bad++;
      out(`FAILED bundle ${i + 1}: ${(err as Error).message}`);
    }
  });
  return bad === 0 && lines.length > 0 ? 0 : 1;
}

/** `gitgate audit consistency`: a consistency proof from a saved checkpoint to the repo's tree (RFC 9162 §2.1.4). */
export async function auditConsistency(
  oldCheckpoint: string,
  repo: string,
  opts: { key?: readonly string[] },
  out: (line: string) => void,
): Promise<number> {
  const keys = verifierKeys(opts.key ?? []);
  const root = path.resolve(repo);
  const report = await verifyAuditRepo(root, { keys, checkpoint: readBounded(oldCheckpoint, MAX_NOTE_BYTES) });
  if (!report.ok || report.checkpoint === undefined) {
    out(`FAILED at ${report.error?.where ?? 'repo'}: ${report.error?.why ?? 'not a transparency-log repo'}`);
    return 1;
  }
  const old = openCheckpoint(readBounded(oldCheckpoint, MAX_NOTE_BYTES), keys);
  const log = readLog(root);
  const proof = consistencyProof(memoryTree(log.leaves), old.size, report.checkpoint.size);
  out(
    JSON.stringify({
      oldSize: old.size,
      oldRoot: old.root.toString('base64'),
      size: report.checkpoint.size,
      root: report.checkpoint.root,
      proof: proof.map((h) => h.toString('base64')),
      checkpoint: report.checkpoint.note,
    }),
  );
  return 0;
}

/** `gitgate audit replay`: every exchange in time order, across sessions and streams, with arguments and the approvals that released calls. */
export async function auditReplay(
  repo: string,
  opts: { session?: string; caller?: string; since?: string; json?: boolean },
  out: (line: string) => void,
): Promise<number> {
  const root = path.resolve(repo);
  if (!existsSync(path.join(root, 'streams')))
    throw new Error(
      `${root} is not an audit repo (no streams/ folder): pass the gateway's <data-dir>/audit or a clone of it`,
    );
  const filter: RecordFilter = {
    ...(opts.session !== undefined ? { session: opts.session } : {}),
    ...(opts.caller !== undefined ? { caller: opts.caller } : {}),
    ...(opts.since !== undefined ? { since: sinceToIso(opts.since) } : {}),
  };
  const approvals = new ApprovalIndex(root);
  let n = 0;
  let stream = '';
  for (const r of readTimeline(root, filter)) {
    n++;
    if (opts.json === true) {
      out(JSON.stringify(r));
      continue;
    }
    if (r.stream !== stream) {
      stream = r.stream;
      out(printable(`== ${stream}${r.upstream ? ` (upstream ${r.upstream})` : ''}`));
    }
    out(describeRecord(r, approvals));
  }
  if (n === 0 && opts.json !== true) out('no records match');
  return 0;
}

export async function auditExport(
  repo: string,
  opts: { since?: string },
  out: (line: string) => void,
): Promise<number> {
  for await (const r of readRecords(
    path.resolve(repo),
    opts.since !== undefined ? { since: sinceToIso(opts.since) } : {},
  ))
    out(JSON.stringify(r));
  return 0;
}
