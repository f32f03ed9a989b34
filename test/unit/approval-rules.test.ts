import { describe, expect, it } from 'vitest';
import { approvalId, callHash } from '../../src/approvals/call-id.js';
import { applyEvent, expireIfDue } from '../../src/approvals/rules.js';
import type { ApprovalRecord } from '../../src/approvals/types.js';

const now = new Date('2026-11-26T12:00:00Z');
const approval = (over: Partial<ApprovalRecord> = {}): ApprovalRecord => ({
  id: 'a-1',
  callHash: 'h',
  generation: 1,
  status: 'pending',
  createdAt: now.toISOString(),
  expiresAt: new Date(now.getTime() + 60_000).toISOString(),
  requester: { sub: 'alice', login: 'alice-gh' },
  call: { upstream: 'u', method: 'tools/call', tool: 't', arguments: {} },
  approvers: ['@acme/security'],
  minApprovals: 2,
  reasons: [],
  risk: 'high',
  policy: { revision: null, bundleDigest: 'd' },
  approvals: [],
  remote: { ref: '1', url: 'u', headSha: 'head' },
  ...over,
});
const ok = { now, eligible: true };

describe('approval rules', () => {
  it('binds to the exact call: caller, upstream, method, target and canonical arguments', () => {
    const base = { caller: { sub: 'alice', issuer: 'i' }, upstream: 'u', method: 'tools/call', tool: 't', arguments: { a: 1, b: [1, 2] } };
    expect(callHash(base)).toBe(callHash({ ...base, arguments: { b: [1, 2], a: 1 } }));
    for (const other of [{ ...base, arguments: { a: 2, b: [1, 2] } }, { ...base, tool: 'x' }, { ...base, upstream: 'v' }, { ...base, caller: { sub: 'bob', issuer: 'i' } }]) {
      expect(callHash(other)).not.toBe(callHash(base));
    }
    expect(approvalId(callHash(base), 3)).toMatch(/^[0-9a-f]{20}-3$/);
  });

  it('counts distinct eligible reviewers of the head, never the requester', () => {
    const a = approval();
    expect(applyEvent(a, { kind: 'review', login: 'alice-gh', state: 'approved', commit: 'head', body: '' }, ok).ignored).toMatch(/requested this call/);
    expect(applyEvent(a, { kind: 'review', login: 'mallory', state: 'approved', commit: 'head', body: '' }, { now, eligible: false }).ignored).toMatch(/not an eligible approver/);
    expect(applyEvent(a, { kind: 'review', login: 'sam', state: 'approved', commit: 'old', body: '' }, ok).ignored).toMatch(/not the head/);
    expect(applyEvent(a, { kind: 'review', login: 'sam', state: 'approved', commit: 'head', body: '' }, ok).change).toBe('counted');
    expect(applyEvent(a, { kind: 'review', login: 'SAM', state: 'approved', commit: 'head', body: '' }, ok).change).toBe('counted');
    expect(a.status).toBe('pending');
    expect(applyEvent(a, { kind: 'review', login: 'sue', state: 'approved', commit: 'head', body: '' }, ok).change).toBe('approved');
    expect(a.status).toBe('approved');
    expect(applyEvent(a, { kind: 'review', login: 'tom', state: 'changes_requested', commit: 'head', body: 'no' }, ok).ignored).toBe('approval is approved');
  });

  it('a new head clears earlier approvals; changes requested denies with the comment', () => {
    const a = approval();
    applyEvent(a, { kind: 'review', login: 'sam', state: 'approved', commit: 'head', body: '' }, ok);
    expect(applyEvent(a, { kind: 'head', sha: 'head2' }, ok).change).toBe('head');
    expect(a.approvals).toEqual([]);
    applyEvent(a, { kind: 'review', login: 'sue', state: 'changes_requested', commit: 'head2', body: 'Not now.' }, ok);
    expect(a).toMatchObject({ status: 'denied', denial: { by: 'sue', reason: 'Not now.' } });
  });

  it('merge by an eligible non-requester approves; a close denies; expiry ends it', () => {
    const merged = approval();
    expect(applyEvent(merged, { kind: 'merged', login: 'alice-gh' }, ok).ignored).toMatch(/requested this call/);
    expect(applyEvent(merged, { kind: 'merged', login: 'sam' }, ok).change).toBe('approved');
    const closed = approval();
    expect(applyEvent(closed, { kind: 'closed', login: 'sam' }, ok).change).toBe('denied');
    const old = approval();
    expect(applyEvent(old, { kind: 'review', login: 'sam', state: 'approved', commit: 'head', body: '' }, { now: new Date(now.getTime() + 120_000), eligible: true }).ignored).toBe('approval expired');
    expect(expireIfDue(old, new Date(now.getTime() + 120_000))).toBe(true);
    expect(old.status).toBe('expired');
  });
});
