import type { LocalGitRepo } from './git-repo.js';

/** One approver's decision on a local approval, as `gitgate approvals approve|deny` records it on main. */
export interface LocalDecision {
  readonly action: 'approve' | 'deny';
  /** The approver's login: the verified token's GitHub login claim, else approvals.logins[sub], else its sub. */
  readonly by: string;
  /** The verified token's subject, issuer and email. */
  readonly sub: string;
  readonly issuer: string;
  readonly email?: string;
  readonly reason?: string;
  readonly at: string;
  /** The head of the approval branch that was decided on. */
  readonly commit: string;
}

export const branchOf = (id: string) => `gitgate/approval/${id}`;
const decisionsDir = (id: string) => `decisions/${id}`;
const decisionFile = (id: string, by: string) => `${decisionsDir(id)}/${encodeURIComponent(by.toLowerCase())}.json`;

/** Every approver's decision on an approval (one file each under decisions/<id>/ on main). */
export async function readDecisions(repo: LocalGitRepo, id: string): Promise<LocalDecision[]> {
  const out: LocalDecision[] = [];
  for (const file of await repo.list('main', decisionsDir(id))) {
    const raw = await repo.read('main', file);
    if (raw !== undefined) out.push(JSON.parse(raw) as LocalDecision);
  }
  return out.sort((a, b) => a.at.localeCompare(b.at));
}

/** Record one approver's decision (the gateway applies its rules to it); each approver decides once. */
export async function recordLocalDecision(
  repo: LocalGitRepo,
  id: string,
  d: Omit<LocalDecision, 'commit' | 'at'>,
  now: Date,
): Promise<LocalDecision> {
  const branch = branchOf(id);
  const head = await repo.head(branch);
  if (head === undefined) throw new Error(`no approval branch ${branch}: is the id right (gitgate approvals list)?`);
  if ((await repo.read('main', decisionFile(id, d.by))) !== undefined)
    throw new Error(`${d.by} already decided approval ${id}`);
  const decision: LocalDecision = { ...d, commit: head, at: now.toISOString() };
  const verb = d.action === 'approve' ? 'approved' : 'denied';
  await repo.commit(
    'main',
    { [decisionFile(id, d.by)]: `${JSON.stringify(decision, null, 2)}\n` },
    `${branch}: ${verb} by ${d.by}${d.reason ? ` (${d.reason})` : ''}`,
    undefined,
    undefined,
    d.by,
  );
  return decision;
}
