export type ApprovalStatus = 'pending' | 'approved' | 'executed' | 'denied' | 'expired';

export interface ApprovalCall {
  readonly upstream: string;
  readonly method: string;
  readonly tool?: string;
  readonly uri?: string;
  /** As the decision's mask rules leave them (what reviewers see). */
  readonly arguments: unknown;
}

export interface ApprovalVote {
  readonly login: string;
  readonly at: string;
  readonly commit?: string;
}

/** One request for approval of one exact call; persisted before anything is opened remotely. */
export interface ApprovalRecord {
  readonly id: string;
  /** sha256 of the canonical call: identical retries share it. */
  readonly callHash: string;
  readonly generation: number;
  status: ApprovalStatus;
  readonly createdAt: string;
  readonly expiresAt: string;
  readonly requester: { readonly sub: string; readonly login: string };
  readonly call: ApprovalCall;
  readonly approvers: readonly string[];
  readonly minApprovals: number;
  readonly reasons: readonly string[];
  readonly risk: string;
  readonly policy: { readonly revision: string | null; readonly bundleDigest: string };
  approvals: ApprovalVote[];
  denial?: { readonly by: string; readonly reason: string; readonly at: string };
  /** Where reviewers decide: a PR (GitHub) or a branch (local). */
  remote?: { readonly ref: string; readonly url: string; headSha: string; readonly checkRunId?: number };
  executedAt?: string;
  /** The outcome was reported back (check run completed, comment, PR closed or merged). */
  finished?: boolean;
}

/** What a provider reports about the place reviewers decide. */
export type ReviewEvent =
  | { readonly kind: 'review'; readonly login: string; readonly state: 'approved' | 'changes_requested' | 'commented' | 'dismissed'; readonly commit: string; readonly body: string }
  | { readonly kind: 'merged'; readonly login: string }
  | { readonly kind: 'closed'; readonly login: string }
  | { readonly kind: 'head'; readonly sha: string };
