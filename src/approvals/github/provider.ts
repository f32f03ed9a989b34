import { createAppAuth } from '@octokit/auth-app';
import { Octokit } from '@octokit/rest';
import type { LRUCache } from 'lru-cache';
import { boundedCache } from '../../cache.js';
import { type Clock, systemClock } from '../../clock.js';
import type { ApprovalProvider } from '../provider.js';
import { approvalBody, approvalDocument, approvalTitle } from '../request-text.js';
import { isRequester, requiredApprovals } from '../requester.js';
import type { ApprovalRecord, Remote, RemoteState } from '../types.js';
import { latestReviews } from './reviews.js';

export interface GitHubProviderConfig {
  readonly baseUrl: string;
  readonly owner: string;
  readonly repo: string;
  readonly baseBranch: string;
  readonly auth:
    | { readonly token: string }
    | { readonly appId: number; readonly privateKey: string; readonly installationId: number };
  /** After the outcome: close the PR, or merge it (a permanent record on the base branch). */
  readonly onFinish: 'close' | 'merge';
}

const CHECK_NAME = 'gitgate/approval';
/** How long a team membership answer is reused by webhooks and polls, and how many are kept. */
const MEMBERSHIP_CACHE_MS = 60_000;
const MEMBERSHIP_CACHE_MAX = 10_000;
const branchOf = (id: string) => `gitgate/approval/${id}`;

/** Approvals as GitHub pull requests (GitHub.com or Enterprise via baseUrl). */
export class GitHubApprovalProvider implements ApprovalProvider {
  readonly kind = 'github' as const;
  readonly #gh: Octokit;
  readonly #membership: LRUCache<string, { member: boolean }>;

  constructor(
    private readonly cfg: GitHubProviderConfig,
    log: { warn(msg: string): void } = { warn: () => undefined },
    /** The clock of the membership cache. */
    clock: Clock = systemClock,
  ) {
    this.#membership = boundedCache({ max: MEMBERSHIP_CACHE_MAX, ttlMs: MEMBERSHIP_CACHE_MS, clock });
    // Request logging is ours to do (structured, without tokens); octokit only reports warnings.
    const quiet = {
      debug: () => undefined,
      info: () => undefined,
      warn: (m: string) => log.warn(m),
      error: (m: string) => log.warn(m),
    };
    this.#gh =
      'token' in cfg.auth
        ? new Octokit({ baseUrl: cfg.baseUrl, auth: cfg.auth.token, userAgent: 'gitgate', log: quiet })
        : new Octokit({
            baseUrl: cfg.baseUrl,
            authStrategy: createAppAuth,
            auth: { appId: cfg.auth.appId, privateKey: cfg.auth.privateKey, installationId: cfg.auth.installationId },
            userAgent: 'gitgate',
            log: quiet,
          });
  }

  get #repo() {
    return { owner: this.cfg.owner, repo: this.cfg.repo };
  }

  /**
   * Branch, file, pull request, reviewers, check run. Idempotent: a retry
   * (after a crash, or an error half-way) adopts the pull request, branch and
   * file an earlier attempt made instead of making another.
   */
  async open(a: ApprovalRecord): Promise<Remote> {
    const branch = branchOf(a.id);
    const pr = (await this.#pullOf(branch)) ?? (await this.#create(a, branch));
    const users: string[] = [];
    const teams: string[] = [];
    for (const entry of a.approvers) {
      const name = entry.replace(/^@/, '');
      if (name.includes('/')) teams.push(name.split('/')[1]!);
      else users.push(name);
    }
    const reviewers = users.filter((u) => !isRequester(a.requester, [u]));
    if (reviewers.length > 0 || teams.length > 0) {
      await this.#gh.rest.pulls.requestReviewers({
        ...this.#repo,
        pull_number: pr.number,
        reviewers,
        team_reviewers: teams,
      });
    }
    const check = await this.#gh.rest.checks.create({
      ...this.#repo,
      name: CHECK_NAME,
      head_sha: pr.head.sha,
      status: 'in_progress',
      output: {
        title: 'Waiting for approval',
        summary: `${requiredApprovals(a, 'github')} approval(s) needed from ${a.approvers.join(', ')} before ${a.expiresAt}.`,
      },
    });
    return { ref: String(pr.number), url: pr.html_url, headSha: pr.head.sha, checkRunId: check.data.id };
  }

  /** The pull request of an approval branch, open or not, if one was made. */
  async #pullOf(branch: string): Promise<{ number: number; html_url: string; head: { sha: string } } | undefined> {
    const list = await this.#gh.rest.pulls.list({
      ...this.#repo,
      head: `${this.cfg.owner}:${branch}`,
      state: 'all',
      per_page: 10,
    });
    return list.data[0];
  }

  async #create(
    a: ApprovalRecord,
    branch: string,
  ): Promise<{ number: number; html_url: string; head: { sha: string } }> {
    const file = `approvals/${a.id}.yaml`;
    const base = await this.#gh.rest.git.getRef({ ...this.#repo, ref: `heads/${this.cfg.baseBranch}` });
    await this.#gh.rest.git
      .createRef({ ...this.#repo, ref: `refs/heads/${branch}`, sha: base.data.object.sha })
      .catch((err: { status?: number }) => {
        if (err.status !== 422) throw err; // already exists: a retry
      });
    const written = await this.#gh.rest.repos.getContent({ ...this.#repo, path: file, ref: branch }).then(
      () => true,
      (err: { status?: number }) => {
        if (err.status === 404) return false;
        throw err;
      },
    );
    if (!written) {
      await this.#gh.rest.repos.createOrUpdateFileContents({
        ...this.#repo,
        path: file,
        message: `approval requested: ${approvalTitle(a)}`,
        content: Buffer.from(approvalDocument(a)).toString('base64'),
        branch,
      });
    }
    try {
      return (
        await this.#gh.rest.pulls.create({
          ...this.#repo,
          title: approvalTitle(a),
          head: branch,
          base: this.cfg.baseBranch,
          body: approvalBody(a),
        })
      ).data;
    } catch (err) {
      // "A pull request already exists": another attempt made it meanwhile.
      const made = (err as { status?: number }).status === 422 ? await this.#pullOf(branch) : undefined;
      if (made === undefined) throw err;
      return made;
    }
  }

  async state(a: ApprovalRecord, remote: Remote): Promise<RemoteState> {
    const pull_number = Number(remote.ref);
    // The pull request, its reviews (every page: a reviewer's latest review may be the last one listed) and
    // its files are asked at once; the approval file's content is then read at the head the reviews are
    // counted against (an approval counts only for that head).
    const [pr, listed, files] = await Promise.all([
      this.#gh.rest.pulls.get({ ...this.#repo, pull_number }).then((r) => r.data),
      this.#gh.paginate(this.#gh.rest.pulls.listReviews, { ...this.#repo, pull_number, per_page: 100 }),
      this.#gh.paginate(this.#gh.rest.pulls.listFiles, { ...this.#repo, pull_number, per_page: 100 }),
    ]);
    const reviews = latestReviews(listed);
    const state = pr.merged === true ? 'merged' : pr.state === 'closed' ? 'closed' : 'open';
    let closer: { login: string; type?: string } | null | undefined;
    if (state === 'merged') closer = pr.merged_by;
    else if (state === 'closed')
      closer = (await this.#gh.rest.issues.get({ ...this.#repo, issue_number: pull_number })).data.closed_by;
    const tampered = await this.#tampered(a, pr, files);
    return {
      head: pr.head.sha,
      state,
      reviews,
      ...(tampered !== undefined ? { tampered } : {}),
      ...(pr.user?.login !== undefined ? { author: pr.user.login } : {}),
      ...(closer ? { closedBy: closer.login, ...(closer.type === 'Bot' ? { closedByBot: true } : {}) } : {}),
    };
  }

  /**
   * What reviewers see, compared with what gitgate wrote: the title, the
   * description, the base, and the diff (exactly the approval file, with the
   * content written). Anyone with write access can edit a pull request; an
   * approval of an edited one is not an approval of this call.
   */
  async #tampered(
    a: ApprovalRecord,
    pr: {
      number: number;
      title: string;
      body: string | null;
      base: { ref: string };
      head: { ref: string; sha: string };
    },
    files: readonly { readonly filename: string }[],
  ): Promise<string | undefined> {
    const norm = (t: string | null | undefined) => (t ?? '').replace(/\r\n/g, '\n').trimEnd();
    const file = `approvals/${a.id}.yaml`;
    if (pr.head.ref !== branchOf(a.id)) return `its head branch is ${pr.head.ref}`;
    if (pr.base.ref !== this.cfg.baseBranch) return `its base was changed to ${pr.base.ref}`;
    if (norm(pr.title) !== norm(approvalTitle(a))) return 'its title was edited';
    if (norm(pr.body) !== norm(approvalBody(a))) return 'its description was edited';
    const others = files.map((f) => f.filename).filter((f) => f !== file);
    if (others.length > 0)
      return `it changes ${others.slice(0, 5).join(', ')}${others.length > 5 ? '…' : ''} besides ${file}`;
    const got = await this.#gh.rest.repos.getContent({ ...this.#repo, path: file, ref: pr.head.sha }).then(
      (r) =>
        !Array.isArray(r.data) && r.data.type === 'file' && 'content' in r.data
          ? Buffer.from(r.data.content, 'base64').toString('utf8')
          : undefined,
      (err: { status?: number }) => {
        if (err.status === 404) return undefined;
        throw err;
      },
    );
    if (got !== approvalDocument({ ...a, status: 'pending' })) return `${file} was changed`;
    return undefined;
  }

  /** Team membership is cached for MEMBERSHIP_CACHE_MS, except when `fresh` (the release asks GitHub). */
  async isEligible(
    login: string,
    approvers: readonly string[],
    opts: { readonly fresh?: boolean } = {},
  ): Promise<boolean> {
    for (const entry of approvers) {
      const name = entry.replace(/^@/, '');
      if (!name.includes('/')) {
        if (name.toLowerCase() === login.toLowerCase()) return true;
        continue;
      }
      const [org, team] = name.split('/') as [string, string];
      const key = `${org}/${team}/${login}`.toLowerCase();
      const hit = opts.fresh === true ? undefined : this.#membership.get(key);
      if (hit !== undefined) {
        if (hit.member) return true;
        continue;
      }
      const member = await this.#gh.rest.teams
        .getMembershipForUserInOrg({ org, team_slug: team, username: login })
        .then(
          (r) => r.data.state === 'active',
          (err: { status?: number }) => {
            if (err.status === 404) return false;
            throw err;
          },
        );
      this.#membership.set(key, { member });
      if (member) return true;
    }
    return false;
  }

  async finish(a: ApprovalRecord): Promise<void> {
    if (a.remote === undefined) return;
    const pull_number = Number(a.remote.ref);
    const ok = a.status === 'executed' || a.status === 'approved';
    const summary =
      a.status === 'executed'
        ? `Approved by ${a.approvals.map((v) => v.login).join(', ')}; the call was released to ${a.call.upstream} at ${a.executedAt}.`
        : a.status === 'denied'
          ? `Denied by ${a.denial?.by}: ${a.denial?.reason}`
          : `The approval ${a.status} at ${a.expiresAt}.`;
    if (a.remote.checkRunId !== undefined) {
      await this.#gh.rest.checks.update({
        ...this.#repo,
        check_run_id: a.remote.checkRunId,
        status: 'completed',
        conclusion: ok ? 'success' : 'failure',
        output: { title: ok ? 'Approved and executed' : `Approval ${a.status}`, summary },
      });
    }
    await this.#gh.rest.issues.createComment({ ...this.#repo, issue_number: pull_number, body: `gitgate: ${summary}` });
    const pr = await this.#gh.rest.pulls.get({ ...this.#repo, pull_number });
    if (pr.data.state !== 'open') return;
    if (ok && this.cfg.onFinish === 'merge') {
      await this.#gh.rest.pulls.merge({
        ...this.#repo,
        pull_number,
        merge_method: 'merge',
        commit_title: `gitgate approval ${a.id}: ${a.status}`,
      });
    } else {
      await this.#gh.rest.pulls.update({ ...this.#repo, pull_number, state: 'closed' });
    }
  }
}
