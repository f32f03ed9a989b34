import type { GitHubWebhooks } from '../../webhooks/verify-and-receive.js';
import type { ApprovalService } from '../service.js';
import type { ReviewEvent } from '../types.js';

interface PullRequestPayload {
  action?: string;
  pull_request?: { number?: number; head?: { sha?: string }; merged?: boolean; merged_by?: { login?: string } | null; user?: { login?: string } };
  review?: { state?: string; commit_id?: string; body?: string | null; user?: { login?: string } };
  sender?: { login?: string };
}

/** pull_request_review and pull_request webhooks → the approval state machine (same path as polling). */
export function githubApprovalEvents(webhooks: GitHubWebhooks, approvals: ApprovalService): void {
  webhooks.on('pull_request_review', async (raw) => {
    const p = raw as PullRequestPayload;
    const number = p.pull_request?.number;
    if (p.action !== 'submitted' || number === undefined || p.review?.user?.login === undefined) return;
    const state = (p.review.state ?? '').toLowerCase();
    if (state !== 'approved' && state !== 'changes_requested') return;
    const events: ReviewEvent[] = [];
    if (p.pull_request?.head?.sha) events.push({ kind: 'head', sha: p.pull_request.head.sha });
    events.push({ kind: 'review', login: p.review.user.login, state, commit: p.review.commit_id ?? '', body: p.review.body ?? '' });
    await approvals.applyRemote(String(number), events);
  });
  webhooks.on('pull_request', async (raw) => {
    const p = raw as PullRequestPayload;
    const number = p.pull_request?.number;
    if (p.action !== 'closed' || number === undefined) return;
    const event: ReviewEvent =
      p.pull_request?.merged === true
        ? { kind: 'merged', login: p.pull_request.merged_by?.login ?? p.sender?.login ?? 'unknown' }
        : { kind: 'closed', login: p.sender?.login ?? 'unknown' };
    await approvals.applyRemote(String(number), [event]);
  });
}
