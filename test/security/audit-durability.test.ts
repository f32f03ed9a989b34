/**
 * The audit trail can miss or bend what happened: each case an attacker (or an
 * accident: a crash, a clock, a second process) could use, shown against real
 * parts: real gateways, real WAL files, real git repos in temp folders.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseLine } from '../../src/audit/record.js';
import { streamFile } from '../../src/audit/store.js';
import { verifyAuditRepo } from '../../src/audit/verify.js';
import type { PolicyInput } from '../../src/policy/input.js';
import { decisionEvent, openTrail } from '../helpers/audit-repo.js';

describe('records that outlive their stream state', () => {
  it('a record appended to a stream after it was forgotten (a call still in flight when its session closed) continues its seq', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'gitgate-forget-'));
    const t = await openTrail(root);
    await t.log.append('sessions/s1', decisionEvent('in-flight'));
    // The session closes (DELETE, idle expiry) before anything was committed…
    await t.log.append('sessions/s1', { type: 'session.close', session: 's1', data: { reason: 'closed by the client (DELETE)' } });
    t.log.forget('sessions/s1');
    // …and the call that was in flight answers afterwards.
    await t.log.append('sessions/s1', { ...decisionEvent('answered-late'), type: 'error', data: { code: 'UPSTREAM_UNAVAILABLE', http_status: 502, rpc_code: -32014, message: 'session closed', id: 1, ms: 1 } });
    await t.committer.commit();
    await t.log.close();
    const lines = readFileSync(streamFile(path.join(root, 'audit'), 'sessions/s1'), 'utf8').trim().split('\n');
    expect(lines.map((l) => `${parseLine(l).record.seq} ${parseLine(l).record.type}`)).toEqual(['0 decision', '1 session.close', '2 error']);
    expect(t.committer.status().lastError).toBeUndefined();
    expect((await verifyAuditRepo(path.join(root, 'audit'))).error).toBeUndefined();
  });

});

describe('a long last line', () => {
  it('a stream whose last line is over 64 KiB of multi-byte text continues its chain after a restart', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'gitgate-bigline-'));
    const first = await openTrail(root);
    // A caller controls this payload: arguments of 2- and 3-byte characters, about 100 KB; shifted
    // by 0–4 bytes so that a character straddles every 64 KiB boundary a reader might cut at.
    const shifts = [0, 1, 2, 3, 4];
    for (const shift of shifts) {
      await first.log.append(`s${shift}`, decisionEvent('small'));
      const event = decisionEvent('big');
      const input = event.data!.input as PolicyInput;
      await first.log.append(`s${shift}`, { ...event, data: { ...event.data, input: { ...input, mcp: { ...input.mcp, arguments: { note: 'é✓'.repeat(20_000) + 'x'.repeat(shift) } } } } });
    }
    await first.committer.commit();
    await first.log.close();
    const second = await openTrail(root, first.key);
    await second.committer.recover();
    for (const shift of shifts) await second.log.append(`s${shift}`, decisionEvent('after-restart'));
    await second.committer.commit();
    await second.log.close();
    const report = await verifyAuditRepo(path.join(root, 'audit'));
    expect(report.error).toBeUndefined();
    expect(report.records).toBe(3 * shifts.length);
  });
});