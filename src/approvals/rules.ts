import { isRequester } from './requester.js';
import type { ApprovalRecord, ApprovalVote, RemoteState } from './types.js';

export interface RuleContext {
  readonly now: Date;
  /** Lower-cased logins that may approve this approval (named users, members of named teams). */
  readonly eligible: ReadonlySet<string>;
  /** Distinct approvals that release it (requester.ts requiredApprovals). */
  readonly required: number;
}

export interface Verdict {
  readonly status: 'pending' | 'approved' | 'denied' | 'expired';
  /** The approvals that count, in the order they were given. */
  readonly approvals: ApprovalVote[];
  readonly denial?: { readonly by: string; readonly reason: string };
  /** Reviews that did not count, and why (for logs). */
  readonly ignored: string[];
}

const same = (a: string, b: string) => a.toLowerCase() === b.toLowerCase();

/**
 * The one state machine both webhooks and polling feed. It never accumulates
 * events: the approval's state is computed from the provider's state as it is
 * now (the head, each reviewer's latest review, whether it is open), so a
 * redelivered, late or forged webhook can change nothing the provider does not say.
 *
 * - past `expiresAt` it is expired;
 * - a request changed after gitgate opened it (title, description, base,
 *   files) is denied: its reviewers may have seen something else;
 * - an eligible non-requester's request for changes denies it, as does a close without merge;
 * - nothing counts from the request's author (gitgate's own account) or a bot;
 * - approvals count only from eligible non-requesters, only for the current head
 *   (a dismissed review is not an approval), one per reviewer;
 * - a merge counts as the merger's approval of the head; a merge that leaves
 *   fewer than `min_approvals` denies it (a merged request gathers no more);
 * - `required` distinct approvals approve it (min_approvals, one more when the
 *   requester's GitHub login is unknown); fewer leave it pending (an approval
 *   that lost one is pending again).
 *
 * The requester is recognised by every name they have (sub, email, its local
 * part, GitHub login), case-insensitively.
 */
export function evaluate(a: ApprovalRecord, s: RemoteState, ctx: RuleContext): Verdict {
  const ignored: string[] = [];
  if (ctx.now.getTime() > Date.parse(a.expiresAt)) return { status: 'expired', approvals: [], ignored };
  if (s.tampered !== undefined) {
    const reason = `the request was changed after gitgate opened it (${s.tampered}): what reviewers saw may not be this call, so no approval of it counts; retry after ${a.expiresAt} to ask again`;
    return { status: 'denied', approvals: [], denial: { by: 'gitgate', reason }, ignored };
  }
  const counts = (login: string, what: string, names: readonly string[] = [], bot = false): boolean => {
    if (isRequester(a.requester, [login, ...names])) {
      ignored.push(`${what} by ${login}: ${login} requested this call and cannot approve or deny it`);
      return false;
    }
    if (s.author !== undefined && same(login, s.author)) {
      ignored.push(`${what} by ${login}: ${login} opened the request (gitgate's own account)`);
      return false;
    }
    if (bot || login.toLowerCase().endsWith('[bot]')) {
      ignored.push(`${what} by ${login}: a bot account approves nothing`);
      return false;
    }
    if (!ctx.eligible.has(login.toLowerCase())) {
      ignored.push(`${what} by ${login}: not an eligible approver (${a.approvers.join(', ')})`);
      return false;
    }
    return true;
  };
  const votes: ApprovalVote[] = [];
  const vote = (login: string, at: string | undefined) => {
    if (votes.some((v) => same(v.login, login))) return;
    const before = a.approvals.find((v) => same(v.login, login) && v.commit === s.head);
    votes.push({ login, at: at ?? before?.at ?? ctx.now.toISOString(), commit: s.head });
  };
  let denial: Verdict['denial'];
  for (const r of s.reviews) {
    if (r.state === 'dismissed') {
      ignored.push(`review by ${r.login} was dismissed`);
      continue;
    }
    if (!counts(r.login, r.state === 'approved' ? 'approval' : 'request for changes', r.names, r.bot === true))
      continue;
    if (r.state === 'changes_requested') {
      denial ??= { by: r.login, reason: r.body.trim() || `changes requested by ${r.login}` };
      continue;
    }
    if (r.commit !== s.head) {
      ignored.push(
        `approval by ${r.login} is for commit ${r.commit.slice(0, 12)}, not the head ${s.head.slice(0, 12)}`,
      );
      continue;
    }
    vote(r.login, r.at);
  }
  if (denial !== undefined) return { status: 'denied', approvals: votes, denial, ignored };
  if (s.state === 'closed') {
    const by = s.closedBy ?? 'someone';
    return {
      status: 'denied',
      approvals: votes,
      denial: { by, reason: `the approval was closed by ${by} without merging` },
      ignored,
    };
  }
  if (s.state === 'merged') {
    const by = s.closedBy ?? 'someone';
    if (counts(by, 'merge', [], s.closedByBot === true)) vote(by, undefined);
    if (votes.length >= ctx.required) return { status: 'approved', approvals: votes, ignored };
    return {
      status: 'denied',
      approvals: votes,
      denial: { by, reason: `merged by ${by} with ${votes.length} of ${ctx.required} required approval(s)` },
      ignored,
    };
  }
  return { status: votes.length >= ctx.required ? 'approved' : 'pending', approvals: votes, ignored };
}

/** Pending or approved past its TTL → expired. */
export function expireIfDue(a: ApprovalRecord, now: Date): boolean {
  if (a.status !== 'pending' && a.status !== 'approved') return false;
  if (now.getTime() <= Date.parse(a.expiresAt)) return false;
  a.status = 'expired';
  return true;
}
