/**
 * The audit trail can miss or bend what happened: each case an attacker (or an
 * accident: a crash, a clock, a second process) could use, shown against real
 * parts: real gateways, real WAL files, real git repos in temp folders.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { verifyAuditRepo } from '../../src/audit/verify.js';
import type { PolicyInput } from '../../src/policy/input.js';
import { decisionEvent, openTrail } from '../helpers/audit-repo.js';

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