/** Who asked for a call, by every name gitgate knows them under. */
export interface Requester {
  readonly sub: string;
  /** Shown to reviewers: the GitHub login when known, else the sub. */
  readonly login: string;
  readonly issuer?: string;
  readonly email?: string;
  /** The requester's GitHub login, when gitgate knows it (the token's claim, or approvals.logins). */
  readonly githubLogin?: string;
  /** Other GitHub logins known to be the requester's (approvals.logins when the token's claim names another): never their approvers. */
  readonly otherLogins?: readonly string[];
}

export type ApprovalStatus = 'pending' | 'approved' | 'executed' | 'denied' | 'expired';

export interface ApprovalCall {
  readonly upstream: string;
  readonly method: string;
  readonly tool?: string;
  /** The prompt a prompts/get asks for. */
  readonly prompt?: string;
  readonly uri?: string;
  /** As the decision's mask rules leave them (what reviewers see), whatever their type. */
  readonly arguments: unknown;
  /** The request's other params (not name, uri, arguments or _meta), masked likewise; absent when none. */
  readonly otherParams?: Readonly<Record<string, unknown>>;
  /** How many values of those the mask rules changed (reviewers see a placeholder; the call runs with them as sent); absent when none. */
  readonly masked?: number;
}

export interface ApprovalVote {
  readonly login: string;
  readonly at: string;
  readonly commit?: string;
}

export type Remote = { readonly ref: string; readonly url: string; headSha: string; readonly checkRunId?: number };

/** One request for approval of one exact call; persisted before anything is opened remotely. */
export interface ApprovalRecord {
  readonly id: string;
  /** sha256 of the canonical call: identical retries share it. */
  readonly callHash: string;
  readonly generation: number;
  status: ApprovalStatus;
  readonly createdAt: string;
  readonly expiresAt: string;
  readonly requester: Requester;
  readonly call: ApprovalCall;
  readonly approvers: readonly string[];
  readonly minApprovals: number;
  /** Distinct approvals that release it (requester.ts requiredApprovals); absent in records of earlier versions. */
  readonly required?: number;
  readonly reasons: readonly string[];
  readonly risk: string;
  readonly policy: { readonly revision: string | null; readonly bundleDigest: string };
  /** The approvals that count now, as last computed from the provider's state. */
  approvals: ApprovalVote[];
  denial?: { readonly by: string; readonly reason: string; readonly at: string };
  /** Where reviewers decide: a PR (GitHub) or a branch (local). headSha is the head as last read. */
  remote?: Remote;
  executedAt?: string;
  /** The outcome was reported back (check run completed, comment, PR closed or merged). */
  finished?: boolean;
}

/** A reviewer's latest decisive review (approve, request changes, or a dismissed one). */
export interface Review {
  readonly login: string;
  /** The reviewer's other names, when the provider knows them (local: the verified token's sub and email). */
  readonly names?: readonly string[];
  readonly state: 'approved' | 'changes_requested' | 'dismissed';
  /** The commit the review was given on. */
  readonly commit: string;
  readonly body: string;
  /** When it was submitted, as the provider says. */
  readonly at?: string;
  /** Given by a bot account (an app, not a person). */
  readonly bot?: boolean;
}

/**
 * Where reviewers decide, as it is now, read from the provider's API (never
 * from a webhook payload): the rules compute the approval's state from this alone.
 */
export interface RemoteState {
  /** The current head commit of the request. */
  readonly head: string;
  readonly state: 'open' | 'closed' | 'merged';
  /** Who closed or merged it, and whether that was a bot account. */
  readonly closedBy?: string;
  readonly closedByBot?: boolean;
  /** Who opened it: gitgate's own account, which never approves what it asked for. */
  readonly author?: string;
  /** Set when what reviewers see is no longer what gitgate wrote (title, description, base, files): why. */
  readonly tampered?: string;
  /** Each reviewer's latest decisive review, in the order they were given. */
  readonly reviews: readonly Review[];
}
