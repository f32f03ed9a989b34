import { describe, expect, it } from 'vitest';
import { approvalId, callHash } from '../../src/approvals/call-id.js';
import { latestReviews } from '../../src/approvals/github/reviews.js';
import { requiredApprovals } from '../../src/approvals/requester.js';
import { evaluate, expireIfDue } from '../../src/approvals/rules.js';
import type { ApprovalRecord, RemoteState, Review } from '../../src/approvals/types.js';

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
const eligible = new Set(['sam', 'sue', 'tom', 'alice-gh']);
const ctx = { now, eligible, required: 2 };
const one = { ...ctx, required: 1 };
const approve = (login: string, commit = 'head'): Review => ({ login, state: 'approved', commit, body: '' });
const state = (reviews: Review[], over: Partial<RemoteState> = {}): RemoteState => ({
  head: 'head',
  state: 'open',
  reviews,
  ...over,
});

describe('approval rules', () => {
  it('binds to the exact call: caller, upstream, method and every param as canonical JSON (not _meta)', () => {
    const base = {
      caller: { sub: 'alice', issuer: 'i' },
      upstream: 'u',
      method: 'tools/call',
      params: { name: 't', arguments: { a: 1, b: [1, 2] } },
    };
    expect(callHash(base)).toBe(
      callHash({ ...base, params: { arguments: { b: [1, 2], a: 1 }, name: 't', _meta: { progressToken: 7 } } }),
    );
    for (const params of [
      { name: 't', arguments: { a: 2, b: [1, 2] } },
      { name: 'x', arguments: { a: 1, b: [1, 2] } },
      { name: 't', arguments: [{ a: 1, b: [1, 2] }] },
      { name: 't', arguments: 'a=1' },
      { name: 't', arguments: { a: 1, b: [1, 2] }, task: { ttl: 1 } },
      { name: 't', arguments: { a: 1, b: [1, 2], ['__proto__']: { x: 1 } } },
    ]) {
      expect(callHash({ ...base, params })).not.toBe(callHash(base));
    }
    for (const other of [
      { ...base, upstream: 'v' },
      { ...base, method: 'prompts/get' },
      { ...base, caller: { sub: 'bob', issuer: 'i' } },
      { ...base, caller: { sub: 'alice', issuer: 'j' } },
    ]) {
      expect(callHash(other)).not.toBe(callHash(base));
    }
    expect(approvalId(callHash(base), 3)).toMatch(/^[0-9a-f]{20}-3-[0-9a-f]{8}$/);
    expect(approvalId(callHash(base), 3)).not.toBe(approvalId(callHash(base), 3));
  });

  it('counts distinct eligible reviewers of the head, never the requester', () => {
    const a = approval();
    const v = evaluate(a, state([approve('alice-gh'), approve('mallory'), approve('sam', 'old'), approve('SUE')]), ctx);
    expect(v.status).toBe('pending');
    expect(v.approvals.map((x) => x.login)).toEqual(['SUE']);
    expect(v.ignored).toEqual([
      expect.stringMatching(/alice-gh requested this call/),
      expect.stringMatching(/mallory: not an eligible approver/),
      expect.stringMatching(/approval by sam is for commit old, not the head/),
    ]);
    expect(evaluate(a, state([approve('sam'), approve('sue')]), ctx)).toMatchObject({
      status: 'approved',
      approvals: [
        { login: 'sam', commit: 'head' },
        { login: 'sue', commit: 'head' },
      ],
    });
  });

  it('is a function of the state alone: the same state gives the same verdict, whatever came before', () => {
    const a = approval({ approvals: [{ login: 'sam', at: 'then', commit: 'head' }] });
    const s = state([approve('sam')]);
    expect(evaluate(a, s, ctx)).toEqual(evaluate(a, s, ctx));
    // The vote keeps the time it was first seen; a review of another head is a new vote.
    expect(evaluate(a, s, ctx).approvals).toEqual([{ login: 'sam', at: 'then', commit: 'head' }]);
    // An approval that is no longer in the state is gone (dismissed, or the head moved).
    expect(
      evaluate(
        approval({
          status: 'approved',
          approvals: [
            { login: 'sam', at: 't' },
            { login: 'sue', at: 't' },
          ],
        }),
        state([approve('sam'), { ...approve('sue'), state: 'dismissed' }]),
        ctx,
      ).status,
    ).toBe('pending');
    expect(evaluate(a, state([approve('sam'), approve('sue')], { head: 'head2' }), ctx).approvals).toEqual([]);
  });

  it('changes requested denies with the comment; a close denies; a merge counts as one approval', () => {
    expect(
      evaluate(
        approval(),
        state([approve('sam'), { login: 'sue', state: 'changes_requested', commit: 'old', body: 'Not now.' }]),
        ctx,
      ),
    ).toMatchObject({ status: 'denied', denial: { by: 'sue', reason: 'Not now.' } });
    expect(evaluate(approval(), state([], { state: 'closed', closedBy: 'sam' }), ctx)).toMatchObject({
      status: 'denied',
      denial: { by: 'sam' },
    });
    expect(evaluate(approval({ minApprovals: 1 }), state([], { state: 'merged', closedBy: 'sam' }), one).status).toBe(
      'approved',
    );
    expect(evaluate(approval(), state([approve('sue')], { state: 'merged', closedBy: 'sam' }), ctx).status).toBe(
      'approved',
    );
    expect(evaluate(approval(), state([], { state: 'merged', closedBy: 'sam' }), ctx)).toMatchObject({
      status: 'denied',
      denial: { reason: 'merged by sam with 1 of 2 required approval(s)' },
    });
    expect(
      evaluate(approval({ minApprovals: 1 }), state([], { state: 'merged', closedBy: 'alice-gh' }), one).status,
    ).toBe('denied');
  });

  it('expiry ends it, whatever the state says', () => {
    const late = { ...ctx, now: new Date(now.getTime() + 120_000) };
    expect(evaluate(approval(), state([approve('sam'), approve('sue')]), late).status).toBe('expired');
    const old = approval({ status: 'approved' });
    expect(expireIfDue(old, late.now)).toBe(true);
    expect(old.status).toBe('expired');
  });

  it('knows the requester by every name: sub, email, its local part, GitHub login, case-insensitively', () => {
    const a = approval({
      requester: { sub: 'alice.smith', login: 'alice-gh', githubLogin: 'alice-gh', email: 'Alice@corp.example' },
    });
    const all = new Set(['alice.smith', 'alice', 'alice@corp.example', 'alice-gh', 'sam']);
    const v = evaluate(
      a,
      state(['ALICE.SMITH', 'alice', 'alice@corp.example', 'Alice-GH', 'sam'].map((l) => approve(l))),
      { ...ctx, eligible: all },
    );
    expect(v.approvals.map((x) => x.login)).toEqual(['sam']);
    expect(v.ignored).toHaveLength(4);
    expect(
      requiredApprovals({ minApprovals: 1, requester: { sub: 'alice.smith', login: 'alice.smith' } }, 'github'),
    ).toBe(2);
    expect(
      requiredApprovals(
        { minApprovals: 1, requester: { sub: 'alice.smith', login: 'alice-gh', githubLogin: 'alice-gh' } },
        'github',
      ),
    ).toBe(1);
    expect(
      requiredApprovals({ minApprovals: 1, requester: { sub: 'alice.smith', login: 'alice.smith' } }, 'local'),
    ).toBe(1);
  });

  it("GitHub reviews: each reviewer's latest decision counts; comments do not replace it; dismissal does", () => {
    const r = (login: string, state: string, commit_id = 'c') => ({ user: { login }, state, commit_id, body: '' });
    expect(
      latestReviews([
        r('sam', 'APPROVED'),
        r('sam', 'COMMENTED'),
        r('sue', 'CHANGES_REQUESTED'),
        r('Sue', 'APPROVED'),
        r('tom', 'APPROVED'),
        r('tom', 'DISMISSED'),
        r('x', 'PENDING'),
      ]),
    ).toEqual([
      { login: 'sam', state: 'approved', commit: 'c', body: '' },
      { login: 'Sue', state: 'approved', commit: 'c', body: '' },
      { login: 'tom', state: 'dismissed', commit: 'c', body: '' },
    ]);
  });
});
