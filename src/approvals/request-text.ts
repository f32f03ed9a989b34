import { printable } from '../printable.js';
import { requiredApprovals } from './requester.js';
import type { ApprovalCall, ApprovalRecord } from './types.js';

/**
 * What reviewers read: the file committed for an approval, the pull request's
 * title and description. Strings from the call (tool name, uri, sub) are
 * quoted so they cannot reshape the text around them: no markdown break-out
 * of a code span, no extra YAML line, no control characters.
 */

/** A markdown code span that holds `s` literally, whatever backticks it contains. */
export function inlineCode(s: string): string {
  const text = printable(s);
  const longest = Math.max(0, ...[...text.matchAll(/`+/g)].map((m) => m[0].length));
  const fence = '`'.repeat(longest + 1);
  return longest === 0 ? `${fence}${text}${fence}` : `${fence} ${text} ${fence}`;
}

/** The file committed for an approval (YAML: every value from the call is a JSON string). */
export function approvalDocument(a: ApprovalRecord): string {
  const q = (s: string) => JSON.stringify(s);
  const lines = [
    `# gitgate approval ${a.id}`,
    `id: ${a.id}`,
    `status: ${a.status}`,
    `requester: ${JSON.stringify(a.requester)}`,
    `upstream: ${q(a.call.upstream)}`,
    `method: ${q(a.call.method)}`,
    ...(a.call.tool !== undefined ? [`tool: ${q(a.call.tool)}`] : []),
    ...(a.call.prompt !== undefined ? [`prompt: ${q(a.call.prompt)}`] : []),
    ...(a.call.uri !== undefined ? [`uri: ${q(a.call.uri)}`] : []),
    `arguments: ${JSON.stringify(a.call.arguments)}`,
    ...(a.call.otherParams !== undefined ? [`other_params: ${JSON.stringify(a.call.otherParams)}`] : []),
    ...(a.call.masked !== undefined ? [`masked_values: ${a.call.masked}`] : []),
    `risk: ${q(a.risk)}`,
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

/** The method and what it names (a tool, a prompt): what reviewers read first. */
export function callWhat(call: ApprovalCall): string {
  const target = call.tool ?? call.prompt;
  return `${call.method}${target !== undefined ? ` ${target}` : ''}`;
}

export function approvalTitle(a: ApprovalRecord): string {
  return printable(`gitgate approval: ${a.requester.login} → ${a.call.upstream} ${callWhat(a.call)}`);
}

/** The pull request's description: what reviewers read before they approve. */
export function approvalBody(a: ApprovalRecord): string {
  const r = a.requester;
  const required = requiredApprovals(a, 'github');
  const who =
    r.githubLogin !== undefined ? `**${printable(r.githubLogin)}** (${inlineCode(r.sub)})` : inlineCode(r.sub);
  const what = callWhat(a.call);
  return [
    `${who} asks to run ${inlineCode(what)} on upstream ${inlineCode(a.call.upstream)}.`,
    ...(a.call.uri !== undefined ? ['', `Resource: ${inlineCode(a.call.uri)}`] : []),
    '',
    '```json',
    JSON.stringify(a.call.arguments, null, 2),
    '```',
    '',
    ...(a.call.otherParams !== undefined
      ? ['Other parameters of the request:', '', '```json', JSON.stringify(a.call.otherParams, null, 2), '```', '']
      : []),
    ...(a.call.masked !== undefined
      ? [
          `> **${a.call.masked} value(s) above are masked** by the policy's mask rules (they looked like credentials): the call runs with them as sent, which this review cannot show. Approve only if you know what they hold.`,
          '',
        ]
      : []),
    `Policy (${a.policy.revision ?? a.policy.bundleDigest.slice(0, 12)}) says: ${printable(a.reasons.join('; '))}`,
    '',
    ...(r.githubLogin === undefined
      ? [
          `> [!WARNING]`,
          `> gitgate does not know the requester's GitHub login (no \`github_login\` claim, no \`approvals.logins\` entry for ${inlineCode(r.sub)}).`,
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
