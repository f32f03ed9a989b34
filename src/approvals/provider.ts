import { requiredApprovals } from './requester.js';
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

/** The human-readable file committed for an approval. */
export function approvalDocument(a: ApprovalRecord): string {
  const lines = [
    `# gitgate approval ${a.id}`,
    `id: ${a.id}`,
    `status: ${a.status}`,
    `requester: ${JSON.stringify(a.requester)}`,
    `upstream: ${a.call.upstream}`,
    `method: ${a.call.method}`,
    ...(a.call.tool !== undefined ? [`tool: ${a.call.tool}`] : []),
    ...(a.call.uri !== undefined ? [`uri: ${JSON.stringify(a.call.uri)}`] : []),
    `arguments: ${JSON.stringify(a.call.arguments)}`,
    ...(a.call.otherParams !== undefined ? [`other_params: ${JSON.stringify(a.call.otherParams)}`] : []),
    `risk: ${a.risk}`,
    `reasons: ${JSON.stringify(a.reasons)}`,
    `policy: ${JSON.stringify(a.policy)}`,
    `approvers: ${JSON.stringify(a.approvers)}`,
    `min_approvals: ${a.minApprovals}`,
    `created_at: ${a.createdAt}`,
    `expires_at: ${a.expiresAt}`,
    `call_sha256: ${a.callHash}`,
  ];
  return `${lines.join('\n')}\n`;
}

export function approvalTitle(a: ApprovalRecord): string {
  return `gitgate approval: ${a.requester.login} → ${a.call.upstream} ${a.call.method}${a.call.tool ? ` ${a.call.tool}` : ''}`;
}

/** The pull request's description: what reviewers read before they approve. */
export function approvalBody(a: ApprovalRecord): string {
  const r = a.requester;
  const required = requiredApprovals(a, 'github');
  const who = r.githubLogin !== undefined ? `**${r.githubLogin}** (\`${r.sub}\`)` : `\`${r.sub}\``;
  return [
    `${who} asks to run \`${a.call.method}${a.call.tool ? ` ${a.call.tool}` : ''}\` on upstream \`${a.call.upstream}\`.`,
    '',
    '```json',
    JSON.stringify(a.call.arguments, null, 2),
    '```',
    '',
    ...(a.call.otherParams !== undefined ? ['Other parameters of the request:', '', '```json', JSON.stringify(a.call.otherParams, null, 2), '```', ''] : []),
    `Policy (${a.policy.revision ?? a.policy.bundleDigest.slice(0, 12)}) says: ${a.reasons.join('; ')}`,
    '',
    ...(r.githubLogin === undefined
      ? [
          `> [!WARNING]`,
          `> gitgate does not know the requester's GitHub login (no \`github_login\` claim, no \`approvals.logins\` entry for \`${r.sub}\`).`,
          `> Reviews by accounts named like any of their identities never count, but another account could still be theirs,`,
          `> so this request needs ${required} approvals: ${a.minApprovals} more than the one that might be the requester's.`,
          '',
        ]
      : []),
    `- Approve the pull request to release exactly this call, once (${required} approval(s) from ${a.approvers.join(', ')}; not the requester).`,
    '- Request changes, or close it, to deny it; your comment is what the caller sees.',
    `- It expires at ${a.expiresAt}.`,
    '',
    `<!-- gitgate:approval:${a.id} -->`,
  ].join('\n');
}
