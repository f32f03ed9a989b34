import type { ApprovalRecord, ReviewEvent } from './types.js';

export interface RuleContext {
  readonly now: Date;
  /** Whether this login may approve this approval (named user or member of a named team). */
  readonly eligible: boolean;
}

export interface RuleOutcome {
  /** What changed, for logs and audit; undefined when the event was ignored. */
  readonly change?: 'approved' | 'denied' | 'counted' | 'head';
  /** Why an event was ignored. */
  readonly ignored?: string;
}

/**
 * The one state machine both webhooks and polling feed:
 * pending → approved → executed, or pending → denied / expired.
 * Only eligible reviewers count, never the requester, and only for the PR head.
 */
export function applyEvent(a: ApprovalRecord, e: ReviewEvent, ctx: RuleContext): RuleOutcome {
  if (e.kind === 'head') {
    if (a.remote !== undefined && a.remote.headSha !== e.sha) {
      a.remote.headSha = e.sha;
      // Votes were for another commit: they no longer count.
      if (a.status === 'pending') a.approvals = [];
      return { change: 'head' };
    }
    return {};
  }
  if (a.status !== 'pending') return { ignored: `approval is ${a.status}` };
  if (ctx.now.getTime() > Date.parse(a.expiresAt)) return { ignored: 'approval expired' };
  const login = e.login.toLowerCase();
  if (login === a.requester.login.toLowerCase()) return { ignored: `${e.login} requested this call and cannot approve or deny it` };
  if (e.kind === 'closed') {
    a.status = 'denied';
    a.denial = { by: e.login, reason: `the approval was closed by ${e.login} without merging`, at: ctx.now.toISOString() };
    return { change: 'denied' };
  }
  if (!ctx.eligible) return { ignored: `${e.login} is not an eligible approver (${a.approvers.join(', ')})` };
  if (e.kind === 'merged') {
    a.status = 'approved';
    if (!a.approvals.some((v) => v.login.toLowerCase() === login)) a.approvals.push({ login: e.login, at: ctx.now.toISOString() });
    return { change: 'approved' };
  }
  if (a.remote !== undefined && e.commit !== a.remote.headSha) return { ignored: `review by ${e.login} is for commit ${e.commit.slice(0, 12)}, not the head ${a.remote.headSha.slice(0, 12)}` };
  if (e.state === 'changes_requested') {
    a.status = 'denied';
    a.denial = { by: e.login, reason: e.body.trim() || `changes requested by ${e.login}`, at: ctx.now.toISOString() };
    return { change: 'denied' };
  }
  if (e.state !== 'approved') return { ignored: `a ${e.state} review does not decide` };
  if (!a.approvals.some((v) => v.login.toLowerCase() === login)) a.approvals.push({ login: e.login, at: ctx.now.toISOString(), commit: e.commit });
  if (a.approvals.length >= a.minApprovals) {
    a.status = 'approved';
    return { change: 'approved' };
  }
  return { change: 'counted' };
}

/** Pending past its TTL → expired. */
export function expireIfDue(a: ApprovalRecord, now: Date): boolean {
  if (a.status !== 'pending' && a.status !== 'approved') return false;
  if (now.getTime() <= Date.parse(a.expiresAt)) return false;
  a.status = 'expired';
  return true;
}
