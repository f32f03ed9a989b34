import { Octokit } from '@octokit/rest';
import { COMMENT_MARKER } from './report.js';

/** Create the PR's impact comment, or update the one a previous run left (never a second one). */
export async function upsertComment(opts: {
  baseUrl: string;
  token: string;
  owner: string;
  repo: string;
  pr: number;
  body: string;
}): Promise<'created' | 'updated'> {
  const gh = new Octokit({
    baseUrl: opts.baseUrl,
    auth: opts.token,
    userAgent: 'gitgate',
    log: { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined },
  });
  const comments = await gh.paginate(gh.rest.issues.listComments, {
    owner: opts.owner,
    repo: opts.repo,
    issue_number: opts.pr,
    per_page: 100,
  });
  const mine = comments.find((c) => (c.body ?? '').includes(COMMENT_MARKER));
  if (mine !== undefined) {
    await gh.rest.issues.updateComment({ owner: opts.owner, repo: opts.repo, comment_id: mine.id, body: opts.body });
    return 'updated';
  }
  await gh.rest.issues.createComment({ owner: opts.owner, repo: opts.repo, issue_number: opts.pr, body: opts.body });
  return 'created';
}
