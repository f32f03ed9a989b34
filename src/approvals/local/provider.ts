import { existsSync, mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { gitText as git } from '../../git/run.js';
import { approvalDocument, type ApprovalProvider } from '../provider.js';
import type { ApprovalRecord, Remote, RemoteState } from '../types.js';

export interface LocalDecision {
  readonly action: 'approve' | 'deny';
  readonly by: string;
  readonly reason?: string;
  readonly at: string;
  /** The head of the approval branch that was approved. */
  readonly commit: string;
}

const branchOf = (id: string) => `gitgate/approval/${id}`;

/**
 * Approvals in a local bare git repo (the embedded default): one branch and file
 * per approval; `gitgate approvals approve|deny` merges or closes the branch and
 * records the decision on main. Only plumbing is used (no work tree, a private
 * index per commit), so the CLI and the gateway never contend for one.
 */
export class LocalGitRepo {
  private constructor(readonly dir: string) {}

  static async open(dir: string): Promise<LocalGitRepo> {
    mkdirSync(dir, { recursive: true });
    const repo = new LocalGitRepo(dir);
    if (!existsSync(path.join(dir, 'HEAD'))) {
      await git(dir, ['init', '--bare', '-b', 'main']);
      await repo.commit('main', { 'README.md': '# gitgate approvals\n\nOne branch per approval request; decisions are recorded on main.\n' }, 'init', undefined);
    }
    return repo;
  }

  async head(ref: string): Promise<string | undefined> {
    const out = await git(this.dir, ['rev-parse', '--verify', '-q', `refs/heads/${ref}`]).catch(() => '');
    return out.trim() || undefined;
  }

  async read(ref: string, file: string): Promise<string | undefined> {
    return git(this.dir, ['show', `refs/heads/${ref}:${file}`]).then(
      (s) => s,
      () => undefined,
    );
  }

  /** Commit files onto `branch` (created from `from` when new) through a private index. */
  async commit(branch: string, files: Record<string, string>, message: string, from: string | undefined, extraParent?: string, author?: string): Promise<string> {
    const parent = (await this.head(branch)) ?? (from !== undefined ? await this.head(from) : undefined);
    const index = path.join(this.dir, `index.gitgate-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}`);
    const env = { GIT_INDEX_FILE: index, ...(author ? { GIT_AUTHOR_NAME: author, GIT_AUTHOR_EMAIL: `${author}@users.noreply.localhost` } : {}) };
    try {
      await git(this.dir, parent !== undefined ? ['read-tree', parent] : ['read-tree', '--empty'], env);
      for (const [file, content] of Object.entries(files)) {
        const blob = (await git(this.dir, ['hash-object', '-w', '--stdin'], env, content)).trim();
        await git(this.dir, ['update-index', '--add', '--cacheinfo', `100644,${blob},${file}`], env);
      }
      const tree = (await git(this.dir, ['write-tree'], env)).trim();
      const args = ['commit-tree', tree, '-m', message];
      if (parent !== undefined) args.push('-p', parent);
      if (extraParent !== undefined) args.push('-p', extraParent);
      const sha = (await git(this.dir, args, env)).trim();
      // Compare-and-swap: fails if someone moved the branch meanwhile ('' = must not exist yet).
      const current = await this.head(branch);
      await git(this.dir, ['update-ref', `refs/heads/${branch}`, sha, current === parent ? (parent ?? '') : '']);
      return sha;
    } finally {
      rmSync(index, { force: true });
    }
  }

  async deleteBranch(branch: string): Promise<void> {
    await git(this.dir, ['update-ref', '-d', `refs/heads/${branch}`]).catch(() => undefined);
  }
}

export const decisionFile = (id: string) => `decisions/${id}.json`;

export class LocalApprovalProvider implements ApprovalProvider {
  readonly kind = 'local' as const;

  constructor(
    private readonly repo: LocalGitRepo,
    /** Team name → member logins (the local stand-in for GitHub team membership). */
    private readonly teams: Readonly<Record<string, readonly string[]>>,
  ) {}

  async open(a: ApprovalRecord): Promise<Remote> {
    const sha = await this.repo.commit(branchOf(a.id), { [`approvals/${a.id}.yaml`]: approvalDocument(a) }, `approval requested: ${a.id}`, 'main');
    return { ref: branchOf(a.id), url: `${this.repo.dir}#${branchOf(a.id)}`, headSha: sha };
  }

  async state(a: ApprovalRecord, remote: Remote): Promise<RemoteState> {
    const head = (await this.repo.head(branchOf(a.id))) ?? remote.headSha;
    const raw = await this.repo.read('main', decisionFile(a.id));
    if (raw === undefined) return { head, state: 'open', reviews: [] };
    const d = JSON.parse(raw) as LocalDecision;
    const state = d.action === 'approve' ? 'approved' : 'changes_requested';
    return { head, state: 'open', reviews: [{ login: d.by, state, commit: d.commit, body: d.reason ?? (state === 'approved' ? '' : `denied by ${d.by}`), at: d.at }] };
  }

  async isEligible(login: string, approvers: readonly string[]): Promise<boolean> {
    const l = login.toLowerCase();
    return approvers.some((entry) => {
      const name = entry.replace(/^@/, '');
      const team = this.teams[name.includes('/') ? name.split('/')[1]! : name];
      if (team !== undefined) return team.some((m) => m.toLowerCase() === l);
      return name.toLowerCase() === l;
    });
  }

  async finish(a: ApprovalRecord): Promise<void> {
    const note = `${a.status}${a.denial ? `: ${a.denial.reason}` : ''}`;
    await this.repo.commit('main', { [`outcomes/${a.id}.json`]: `${JSON.stringify({ id: a.id, status: a.status, note, at: new Date().toISOString() }, null, 2)}\n` }, `approval ${a.id} ${note}`, undefined);
  }
}

/** What `gitgate approvals approve|deny` records (the gateway applies its rules to it). */
export async function recordLocalDecision(repo: LocalGitRepo, id: string, d: Omit<LocalDecision, 'commit' | 'at'>): Promise<LocalDecision> {
  const branch = branchOf(id);
  const head = await repo.head(branch);
  if (head === undefined) throw new Error(`no approval branch ${branch}: is the id right (gitgate approvals list)?`);
  if ((await repo.read('main', decisionFile(id))) !== undefined) throw new Error(`approval ${id} was already decided`);
  const decision: LocalDecision = { ...d, commit: head, at: new Date().toISOString() };
  const file = { [decisionFile(id)]: `${JSON.stringify(decision, null, 2)}\n` };
  if (d.action === 'approve') {
    // Merge the approval branch into main, with the decision in the merge commit.
    await repo.commit('main', file, `Merge ${branch}: approved by ${d.by}`, undefined, head, d.by);
  } else {
    await repo.commit('main', file, `Close ${branch}: denied by ${d.by}${d.reason ? ` (${d.reason})` : ''}`, undefined, undefined, d.by);
    await repo.deleteBranch(branch);
  }
  return decision;
}
