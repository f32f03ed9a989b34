import { appendFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { AuditCommitter } from '../../src/audit/committer.js';
import { listFiles } from '../../src/audit/reader.js';
import type { AuditRecord } from '../../src/audit/record.js';
import { latestCheckpointFile } from '../../src/audit/sealer-port.js';
import { PART_BYTES, streamFile } from '../../src/audit/store.js';
import { walFiles } from '../../src/audit/wal.js';
import { gitText } from '../../src/git/run.js';
import { decisionEvent, openTrail as open, verifyRepo } from '../helpers/audit-repo.js';

describe('audit recovery after a crash mid-write to the audit repo', () => {
  it('a torn line and stray files in the work tree are discarded; the WAL puts the records back whole', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'gitgate-recover-'));
    const first = await open(root);
    for (let i = 0; i < 3; i++) await first.log.append('s1', decisionEvent(`a${i}`));
    await first.committer.commit();
    // Durable in the WAL, not committed yet.
    for (let i = 3; i < 6; i++) await first.log.append('s1', decisionEvent(`a${i}`));
    await first.log.append('s2', decisionEvent('b0'));
    await first.log.close();
    // The crash: SIGKILL during the store's append left half a line, and a new stream file half-made.
    const s1 = streamFile(path.join(root, 'audit'), 's1');
    const whole = readFileSync(s1, 'utf8');
    appendFileSync(s1, whole.split('\n')[0]!.slice(0, 40));
    writeFileSync(streamFile(path.join(root, 'audit'), 's2'), '{"jws":"eyJ');

    const second = await open(root, first.key);
    expect((await second.committer.recover()).recovered).toBe(4);
    const lines = readFileSync(s1, 'utf8').trim().split('\n');
    expect(lines).toHaveLength(6);
    expect(lines.map((l) => (JSON.parse(l) as { seq: number }).seq)).toEqual([0, 1, 2, 3, 4, 5]);
    const report = await verifyRepo(path.join(root, 'audit'));
    expect(report.ok, JSON.stringify(report)).toBe(true);
    // The chain goes on from the recovered tail.
    await second.log.append('s1', decisionEvent('a6'));
    await second.committer.commit();
    await second.log.close();
    expect((await verifyRepo(path.join(root, 'audit'))).ok).toBe(true);
  });
});

describe('audit stream files', () => {
  it('a stream past PART_BYTES continues in part files, none over the bound; verify and a restart continue the chain', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'gitgate-parts-'));
    const first = await open(root);
    // About 1.5 KB per record: 700 records span several parts.
    for (let i = 0; i < 700; i++) await first.log.append('s1', decisionEvent(`p${i}-${'x'.repeat(600)}`));
    await first.committer.commit();
    await first.log.close();
    const repo = path.join(root, 'audit');
    const parts: string[] = [];
    while (existsSync(streamFile(repo, 's1', parts.length))) parts.push(streamFile(repo, 's1', parts.length));
    expect(parts.length).toBeGreaterThanOrEqual(3);
    for (const f of parts) expect(statSync(f).size).toBeLessThanOrEqual(PART_BYTES);
    // Each part but the last is full: the next record would not have fitted.
    for (const f of parts.slice(0, -1)) expect(statSync(f).size).toBeGreaterThan(PART_BYTES - 4096);
    expect(parts.flatMap((f) => readFileSync(f, 'utf8').trim().split('\n'))).toHaveLength(700);

    const second = await open(root, first.key);
    await second.committer.recover();
    await second.log.append('s1', decisionEvent('after-restart'));
    await second.committer.commit();
    await second.log.close();
    const report = await verifyRepo(repo);
    expect(report.ok, JSON.stringify(report.error)).toBe(true);
    expect(report.records).toBe(701);
  });
});

/** The WAL segments under `root`, by name, and their bytes. */
function walSnapshot(root: string): Map<string, Buffer> {
  const dir = path.join(root, 'wal');
  return new Map(
    readdirSync(dir)
      .filter((f) => f.startsWith('wal-'))
      .sort()
      .map((f) => [f, readFileSync(path.join(dir, f))]),
  );
}

/** Rewrite the one WAL entry of `stream` at `seq` (whatever segment it is in). */
function editWalEntry(root: string, stream: string, seq: number, edit: (fields: string[]) => string[]): void {
  const dir = path.join(root, 'wal');
  for (const f of readdirSync(dir).filter((n) => n.startsWith('wal-'))) {
    const file = path.join(dir, f);
    const text = readFileSync(file, 'latin1');
    const lines = text.split('\n');
    const i = lines.findIndex((l) => l.split('\t')[1] === String(seq) && l.split('\t')[2] === JSON.stringify(stream));
    if (i < 0) continue;
    lines[i] = edit(lines[i]!.split('\t')).join('\t');
    writeFileSync(file, lines.join('\n'), 'latin1');
    return;
  }
  throw new Error(`no WAL entry ${stream}:${seq}`);
}

/** Every stored record's (stream, seq, exchange), per stream file. */
function stored(repo: string): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const file of listFiles(path.join(repo, 'streams'), '.jsonl')) {
    const rel = path.relative(path.join(repo, 'streams'), file).replace(/\.jsonl$/, '');
    out[rel] = readFileSync(file, 'utf8')
      .trim()
      .split('\n')
      .map((l) => {
        const r = JSON.parse(l) as AuditRecord;
        return `${r.stream}:${r.seq}:${r.exchange}`;
      });
  }
  return out;
}

/** Three streams written through the real log, one group per record, durable in the WAL and not committed. */
async function walWithRecords(root: string) {
  const first = await open(root);
  for (let i = 0; i < 6; i++) for (const s of ['s1', 's2']) await first.log.append(s, decisionEvent(`${s}-${i}`));
  await first.log.close();
  const expected: Record<string, string[]> = {};
  for (const s of ['s1', 's2']) expected[s] = Array.from({ length: 6 }, (_, i) => `${s}:${i}:${s}-${i}`);
  return { key: first.key, expected };
}

describe('audit WAL recovery trusts only checksummed bytes', () => {
  it("a flipped bit in an entry's stream field: nothing is misfiled, the damage is reported", async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'gitgate-walbits-'));
    const { key, expected } = await walWithRecords(root);
    // "s1" → "s3": one bit (0x31 → 0x33) in the stream field, outside the line the checksum covers.
    editWalEntry(root, 's1', 2, (f) => [f[0]!, f[1]!, '"s3"', f[3]!]);
    const second = await open(root, key);
    const { recovered, damage } = await second.committer.recover();
    await second.log.close();
    expect(stored(path.join(root, 'audit'))).toEqual(expected);
    expect(recovered).toBe(12);
    // Reported: the fields, and the group trailer that covers them (nothing was lost).
    expect(damage).toEqual([
      expect.objectContaining({
        kind: 'framing',
        segment: expect.stringMatching(/^wal-\d+\.log$/),
        why: expect.stringMatching(/stream "s3".*"s1"/),
      }),
      expect.objectContaining({ kind: 'trailer' }),
    ]);
    expect((await verifyRepo(path.join(root, 'audit'))).ok).toBe(true);
  });

  it('a lowered seq field: no intact record is dropped, the damage is reported', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'gitgate-walseq-'));
    const { key, expected } = await walWithRecords(root);
    editWalEntry(root, 's1', 4, (f) => [f[0]!, '1', f[2]!, f[3]!]);
    const second = await open(root, key);
    const { damage } = await second.committer.recover();
    await second.log.close();
    expect(stored(path.join(root, 'audit'))).toEqual(expected);
    expect(damage).toEqual([
      expect.objectContaining({ kind: 'framing', why: expect.stringMatching(/seq 1.*seq 4/) }),
      expect.objectContaining({ kind: 'trailer' }),
    ]);
    expect((await verifyRepo(path.join(root, 'audit'))).ok).toBe(true);
  });

  it('a flipped bit in an acknowledged record: recovery refuses loudly, naming it, and leaves the WAL as it was', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'gitgate-walline-'));
    const { key } = await walWithRecords(root);
    // One bit of s1:2's signed line (a character of its exchange id); groups written after it are intact.
    editWalEntry(root, 's1', 2, (f) => [f[0]!, f[1]!, f[2]!, f[3]!.replace('"s1-2"', '"s1-0"')]);
    const before = walSnapshot(root);
    const second = await open(root, key);
    await expect(second.committer.recover()).rejects.toThrow(/wal-\d+\.log:\d+.*damaged/);
    await second.log.close();
    expect(walSnapshot(root)).toEqual(before);
    expect(stored(path.join(root, 'audit'))).toEqual({});
  });

  it('WAL records that continue past what the repo holds (a repo restored from an older backup) are a gap: recovery refuses, nothing moves', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'gitgate-walgap-'));
    const repo = path.join(root, 'audit');
    const first = await open(root);
    for (let i = 0; i < 3; i++) await first.log.append('s1', decisionEvent(`a${i}`));
    await first.committer.commit();
    const older = (await gitText(repo, ['rev-parse', 'HEAD'])).trim();
    for (let i = 3; i < 5; i++) await first.log.append('s1', decisionEvent(`a${i}`));
    await first.committer.commit();
    for (let i = 5; i < 7; i++) await first.log.append('s1', decisionEvent(`a${i}`));
    await first.log.close();
    await gitText(repo, ['reset', '-q', '--hard', older]);
    const before = walSnapshot(root);
    const second = await open(root, first.key);
    await expect(second.committer.recover()).rejects.toThrow(/leaf 5 does not continue the log's tree of 3 \(a gap/);
    await second.log.close();
    expect(walSnapshot(root)).toEqual(before);
    expect(stored(repo).s1).toHaveLength(3);
  });
});

describe('a gap met while committing', () => {
  it('fails the commit loudly: nothing is committed, the records stay in the WAL, the committer says why until it is repaired', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'gitgate-rungap-'));
    const repo = path.join(root, 'audit');
    const errors: unknown[] = [];
    const t = await open(root);
    for (let i = 0; i < 3; i++) await t.log.append('s1', decisionEvent(`a${i}`));
    await t.committer.commit();
    for (let i = 3; i < 6; i++) await t.log.append('s1', decisionEvent(`a${i}`));
    // Between the WAL and the repo, seq 4 goes missing: its entry and its group's trailer are cut
    // out of the segment (each record was a group of its own), so the segment still checks out.
    const walDir = path.join(root, 'wal');
    const segment = readdirSync(walDir)
      .filter((f) => f.startsWith('wal-'))
      .map((f) => path.join(walDir, f))
      .find((f) => readFileSync(f, 'utf8').includes('\t4\t"s1"\t'))!;
    const original = readFileSync(segment);
    const rows = original.toString('utf8').split('\n');
    const at = rows.findIndex((r) => r.includes('\t4\t"s1"\t'));
    expect(rows[at + 1]).toMatch(/^=\t1\t/);
    writeFileSync(segment, [...rows.slice(0, at), ...rows.slice(at + 2)].join('\n'));
    const head = (await gitText(repo, ['rev-parse', 'HEAD'])).trim();
    const wal = walSnapshot(root);
    const committer = new AuditCommitter(t.log, walFiles(path.join(root, 'wal')), t.store, {
      everyRecords: 1_000_000,
      everyMs: 60_000,
      onError: (e) => errors.push(e),
    });
    await committer.commit();
    expect(String(errors[0])).toMatch(/audit stream s1: expected seq 4, found 5 \(a gap/);
    expect(committer.status().blocked).toMatch(/expected seq 4, found 5/);
    expect((await gitText(repo, ['rev-parse', 'HEAD'])).trim()).toBe(head);
    expect(stored(repo).s1).toHaveLength(3);
    expect(t.log.status().uncommitted).toBe(3);
    for (const [name, bytes] of wal) expect(readFileSync(path.join(root, 'wal', name))).toEqual(bytes);
    // Repaired (the segment restored from a backup): the next commit takes everything and the committer is no longer blocked.
    writeFileSync(segment, original);
    await committer.commit();
    expect(committer.status().blocked).toBeUndefined();
    expect(stored(repo).s1).toHaveLength(6);
    await t.log.close();
    expect((await verifyRepo(repo)).ok).toBe(true);
  });
});

describe('when git falls behind', () => {
  it('the committer reads a backlog back from the rolled WAL segments, one git commit each, and nothing is lost or committed twice', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'gitgate-spill-'));
    const repo = path.join(root, 'audit');
    // Segments of a few records each (read back and committed one at a time).
    const t = await open(root, undefined, { segmentBytes: 4 * 1200 });
    await t.committer.recover();
    const line = (i: number) => JSON.stringify(decisionEvent(`a${i}`)).length;
    expect(line(0)).toBeLessThan(1200);
    // In groups of four (one write each): a segment closes after the group that fills it.
    for (let g = 0; g < 10; g++)
      await Promise.all(Array.from({ length: 4 }, (_, i) => t.log.append(`s${i}`, decisionEvent(`a${g * 4 + i}`))));
    expect(t.log.status().uncommitted).toBe(40);
    // A commit that fails (git refuses it) leaves every record in the WAL for the next one.
    const real = t.store.commit.bind(t.store);
    t.store.commit = async () => {
      throw new Error('disk full');
    };
    await t.committer.commit();
    expect(t.committer.status().lastError).toMatch(/disk full/);
    expect(t.log.status().uncommitted).toBe(40);
    t.store.commit = real;
    const commitsBefore = Number(await gitText(repo, ['rev-list', '--count', 'HEAD']));
    await t.committer.commit();
    // One git commit per segment read back, each with a checkpoint over the tree up to its last record.
    expect(Number(await gitText(repo, ['rev-list', '--count', 'HEAD'])) - commitsBefore).toBeGreaterThan(3);
    expect(t.log.status().uncommitted).toBe(0);
    // Those commits carry checkpoints over parts of the tree; the latest one beside the WAL stays the whole tree's.
    const latestSize = () => readFileSync(latestCheckpointFile(path.join(root, 'wal')), 'utf8').split('\n')[1];
    await vi.waitUntil(() => latestSize() === '40', { timeout: 10_000 });
    expect((await verifyRepo(repo)).ok).toBe(true);
    // Another burst, and a record appended while that commit runs: it goes with the next one.
    await Promise.all(Array.from({ length: 20 }, (_, i) => t.log.append(`s${i % 4}`, decisionEvent(`b${i}`))));
    const committing = t.committer.commit();
    const late = t.log.append('s0', decisionEvent('late'));
    await committing;
    await late;
    await t.committer.commit();
    expect(t.log.status().uncommitted).toBe(0);
    const exchanges = listFiles(path.join(repo, 'streams'), '.jsonl')
      .flatMap((f) => readFileSync(f, 'utf8').trim().split('\n'))
      .map((l) => (JSON.parse(l) as AuditRecord).exchange);
    expect(exchanges).toHaveLength(61);
    expect(new Set(exchanges).size).toBe(61);
    await t.log.close();
    expect((await verifyRepo(repo)).ok).toBe(true);
  });

  it('a torn end in a rolled segment (a write cut short, never acknowledged) does not stop the commits', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'gitgate-torn-'));
    const repo = path.join(root, 'audit');
    const t = await open(root);
    await t.committer.recover();
    for (let i = 0; i < 3; i++) await t.log.append('s1', decisionEvent(`a${i}`));
    // What a write cut short leaves after the last complete group (the zeros of the preallocated segment, then bytes).
    const walDir = path.join(root, 'wal');
    const open_ = readdirSync(walDir)
      .filter((f) => f.startsWith('wal-'))
      .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }))
      .at(-1)!;
    appendFileSync(path.join(walDir, open_), 'deadbeef\t3\t"s1"\t{"v":2,"str');
    await t.committer.commit();
    expect(t.committer.status()).toMatchObject({ commits: 1 });
    expect(t.committer.status().lastError).toBeUndefined();
    expect(stored(repo).s1).toHaveLength(3);
    expect(t.log.status().uncommitted).toBe(0);
    await t.log.close();
    expect((await verifyRepo(repo)).ok).toBe(true);
  });
});
