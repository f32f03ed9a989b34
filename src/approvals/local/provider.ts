import { type Clock, systemClock } from '../../clock.js';
import type { ApprovalProvider } from '../provider.js';
import { approvalDocument } from '../request-text.js';
import type { ApprovalRecord, Remote, RemoteState } from '../types.js';
import { branchOf, readDecisions } from './decisions.js';
import type { LocalGitRepo } from './git-repo.js';

/**
 * Approvals in a local git repo (the embedded default): one branch and file per
 * approval; `gitgate approvals approve|deny`, run with the approver's token,
 * records each approver's decision on main. The repo is trusted as the CLI
 * writes it: whoever can write the gateway's data dir can decide approvals.
 */
export class LocalApprovalProvider implements ApprovalProvider {
  readonly kind = 'local' as const;

  constructor(
    private readonly repo: LocalGitRepo,
    /** Team name → member logins: the directory of known users (the local stand-in for GitHub teams). */
    private readonly teams: Readonly<Record<string, readonly string[]>>,
    /** The clock of the outcomes recorded (default: the system clock). */
    private readonly clock: Clock = systemClock,
  ) {}

  async open(a: ApprovalRecord): Promise<Remote> {
    const sha = await this.repo.commit(
      branchOf(a.id),
      { [`approvals/${a.id}.yaml`]: approvalDocument(a) },
      `approval requested: ${a.id}`,
      'main',
    );
    return { ref: branchOf(a.id), url: `${this.repo.dir}#${branchOf(a.id)}`, headSha: sha };
  }

  async state(a: ApprovalRecord, remote: Remote): Promise<RemoteState> {
    const head = (await this.repo.head(branchOf(a.id))) ?? remote.headSha;
    const reviews = (await readDecisions(this.repo, a.id)).map((d) => ({
      login: d.by,
      names: [d.sub, ...(d.email !== undefined ? [d.email] : [])],
      state: d.action === 'approve' ? ('approved' as const) : ('changes_requested' as const),
      commit: d.commit,
      body: d.reason ?? (d.action === 'approve' ? '' : `denied by ${d.by}`),
      at: d.at,
    }));
    return { head, state: 'open', reviews };
  }

  /** Whether a login is a known user of the directory (any team), when there is one. */
  isKnown(login: string): boolean {
    const members = Object.values(this.teams).flat();
    return members.length === 0 || members.some((m) => m.toLowerCase() === login.toLowerCase());
  }

  async isEligible(login: string, approvers: readonly string[]): Promise<boolean> {
    const l = login.toLowerCase();
    if (!this.isKnown(l)) return false;
    return approvers.some((entry) => {
      const name = entry.replace(/^@/, '');
      const team = this.teams[name.includes('/') ? name.split('/')[1]! : name];
      if (team !== undefined) return team.some((m) => m.toLowerCase() === l);
      return name.toLowerCase() === l;
    });
  }

  async finish(a: ApprovalRecord): Promise<void> {
    const note = `${a.status}${a.denial ? `: ${a.denial.reason}` : ''}`;
    await this.repo.commit(
      'main',
      {
        [`outcomes/${a.id}.json`]: `${JSON.stringify({ id: a.id, status: a.status, note, at: new Date(this.clock.now()).toISOString() }, null, 2)}\n`,
      },
      `approval ${a.id} ${note}`,
      undefined,
    );
  }
}
