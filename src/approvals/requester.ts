import type { ApprovalRecord, Requester } from './types.js';

/** Who asked for a call, under every name they may appear as where reviewers decide. */

interface Named {
  readonly sub: string;
  readonly issuer?: string;
  readonly email?: string;
  readonly githubLogin?: string;
}

/** An identity's GitHub login when known: the token's github login claim, else approvals.logins[sub]. */
export function githubLoginOf(identity: Named, logins: Readonly<Record<string, string>>): string | undefined {
  return identity.githubLogin ?? (Object.hasOwn(logins, identity.sub) ? logins[identity.sub] : undefined);
}

/** The name an identity approves under: its GitHub login when known, else its sub. */
export function loginOf(identity: Named, logins: Readonly<Record<string, string>>): string {
  return githubLoginOf(identity, logins) ?? identity.sub;
}

export function requesterOf(identity: Named, logins: Readonly<Record<string, string>>): Requester {
  const githubLogin = githubLoginOf(identity, logins);
  // The operator's mapping stays the requester's even when the token names another account: a claim cannot
  // make the mapped account someone else's, able to approve the requester's own call.
  const mapped = Object.hasOwn(logins, identity.sub) ? logins[identity.sub] : undefined;
  const other = mapped !== undefined && mapped.toLowerCase() !== githubLogin?.toLowerCase() ? [mapped] : [];
  return {
    sub: identity.sub,
    login: githubLogin ?? identity.sub,
    ...(identity.issuer !== undefined ? { issuer: identity.issuer } : {}),
    ...(identity.email !== undefined ? { email: identity.email } : {}),
    ...(githubLogin !== undefined ? { githubLogin } : {}),
    ...(other.length > 0 ? { otherLogins: other } : {}),
  };
}

/** Every name one may appear under, lower-cased: sub, login, GitHub logins, email and the email's local part. */
export function namesOf(p: {
  readonly sub?: string;
  readonly login?: string;
  readonly githubLogin?: string;
  readonly otherLogins?: readonly string[];
  readonly email?: string;
}): Set<string> {
  const names = [p.sub, p.login, p.githubLogin, ...(p.otherLogins ?? []), p.email, p.email?.split('@')[0]];
  return new Set(names.filter((n): n is string => typeof n === 'string' && n !== '').map((n) => n.toLowerCase()));
}

/** Whether any of `names` (a reviewer's login, sub, email…) is one of the requester's, case-insensitively. */
export function isRequester(r: Requester, names: Iterable<string>): boolean {
  const theirs = namesOf(r);
  for (const n of names) if (theirs.has(n.toLowerCase())) return true;
  return false;
}

/**
 * How many distinct approvals release it: `min_approvals`, and one more on
 * GitHub when the requester's GitHub login is unknown — one of the approvals
 * could be the requester's own account, so `min_approvals` of them are
 * still someone else's.
 */
export function requiredApprovals(
  a: Pick<ApprovalRecord, 'minApprovals' | 'requester' | 'required'>,
  kind: 'github' | 'local',
): number {
  return a.required ?? a.minApprovals + (kind === 'github' && a.requester.githubLogin === undefined ? 1 : 0);
}
