import { appendFileSync, existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { PART_BYTES, streamFile } from '../../src/audit/store.js';
import { verifyAuditRepo } from '../../src/audit/verify.js';
import { decisionEvent, openTrail as open } from '../helpers/audit-repo.js';

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
    expect(await second.committer.recover()).toBe(4);
    const lines = readFileSync(s1, 'utf8').trim().split('\n');
    expect(lines).toHaveLength(6);
    expect(lines.map((l) => (JSON.parse(l) as { record: { seq: number } }).record.seq)).toEqual([0, 1, 2, 3, 4, 5]);
    const report = await verifyAuditRepo(path.join(root, 'audit'));
    expect(report.ok, JSON.stringify(report)).toBe(true);
    // The chain goes on from the recovered tail.
    await second.log.append('s1', decisionEvent('a6'));
    await second.committer.commit();
    await second.log.close();
    expect((await verifyAuditRepo(path.join(root, 'audit'))).ok).toBe(true);
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
    const report = await verifyAuditRepo(repo);
    expect(report.ok, JSON.stringify(report.error)).toBe(true);
    expect(report.records).toBe(701);
  });
});
