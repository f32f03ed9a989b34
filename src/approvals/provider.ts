import type { ApprovalRecord, Remote, RemoteState } from './types.js';

/** Where approvals are asked for and decided: GitHub pull requests, or a local git repo (embedded default). */
export interface ApprovalProvider {
  readonly kind: 'github' | 'local';
  /** Branch, file, PR (or local branch), reviewers requested, check run pending. */
  open(a: ApprovalRecord): Promise<Remote>;
  /** The request as it is now, read from the provider itself (a webhook only says when to look). */
  state(a: ApprovalRecord, remote: Remote): Promise<RemoteState>;
  /**
   * Whether `login` is in an approver entry: a user, or a member of a team.
   * `fresh`: ask the source now, not a cached answer (used at the moment a call is released).
   */
  isEligible(login: string, approvers: readonly string[], opts?: { readonly fresh?: boolean }): Promise<boolean>;
  /** Report the outcome where reviewers look (check run, comment, close or merge). */
  finish(a: ApprovalRecord): Promise<void>;
}
