import type { GitHubWebhooks } from '../../webhooks/verify-and-receive.js';
import type { ApprovalService } from '../service.js';

interface HintPayload {
  pull_request?: { number?: unknown };
  repository?: { full_name?: unknown };
}

/**
 * pull_request_review and pull_request webhooks (any action: submitted,
 * dismissed, edited, synchronize, closed, reopened…) are hints: they name the
 * pull request to look at again, and nothing else in them is believed. The
 * approval's state is recomputed from the GitHub API, so a late, redelivered
 * or replayed payload (under any delivery id) changes nothing GitHub does not say.
 * Only pull requests of the configured repository are looked at.
 */
export function githubApprovalEvents(
  webhooks: GitHubWebhooks,
  approvals: ApprovalService,
  repo: { readonly owner: string; readonly repo: string },
): void {
  const fullName = `${repo.owner}/${repo.repo}`.toLowerCase();
  const hint = async (raw: Record<string, unknown>) => {
    const p = raw as HintPayload;
    if (typeof p.repository?.full_name !== 'string' || p.repository.full_name.toLowerCase() !== fullName) return;
    const number = p.pull_request?.number;
    if (typeof number !== 'number' || !Number.isSafeInteger(number)) return;
    await approvals.refresh(String(number));
  };
  webhooks.on('pull_request_review', hint);
  webhooks.on('pull_request', hint);
}
