import type { Review } from '../types.js';

/** A review as GET /repos/{owner}/{repo}/pulls/{pull_number}/reviews lists it. */
export interface ListedReview {
  readonly user?: { readonly login: string; readonly type?: string } | null;
  readonly state: string;
  readonly commit_id?: string | null;
  readonly body?: string | null;
  readonly submitted_at?: string;
}

/**
 * Each reviewer's latest decisive review, as GitHub itself counts them: an
 * approval, a request for changes, or a review that was dismissed (dismissal
 * changes the review's state in place). Comments and pending drafts do not
 * replace an earlier decision. The list must be complete (all pages).
 */
export function latestReviews(listed: readonly ListedReview[]): Review[] {
  const latest = new Map<string, Review>();
  for (const r of listed) {
    const login = r.user?.login;
    if (login === undefined) continue;
    const state = r.state.toLowerCase();
    if (state !== 'approved' && state !== 'changes_requested' && state !== 'dismissed') continue;
    const key = login.toLowerCase();
    // Re-insert so the map keeps the order in which decisions were last given.
    latest.delete(key);
    latest.set(key, {
      login,
      state,
      commit: r.commit_id ?? '',
      body: r.body ?? '',
      ...(r.submitted_at !== undefined ? { at: r.submitted_at } : {}),
      ...(r.user?.type === 'Bot' ? { bot: true } : {}),
    });
  }
  return [...latest.values()];
}
