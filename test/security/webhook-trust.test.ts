import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { GitHubApprovalWorld } from '../helpers/github-approvals.js';

/**
 * A webhook is a hint, never the truth: whatever a (signed) payload says, the
 * approval is what the GitHub API says — the current head, each reviewer's
 * latest review and its state now.
 */
describe('webhooks are hints; the GitHub API is the truth', () => {
  const w = new GitHubApprovalWorld();
  beforeAll(() => w.setup());
  afterEach(async () => expect(await w.after()).toEqual([]));
  afterAll(() => w.teardown());

  it('a review of an older head, delivered after the head moved, does not count', async () => {
    const gw = await w.start();
    const c = await w.client(gw);
    const pr = w.prOf(await w.call(c, 'echo', { message: 'late-review' }));
    // sam approves head H1; GitHub's webhook for it is delayed until after a push moved the head to H2.
    const late = w.gh.review(pr, { login: 'sam', state: 'approved' });
    await w.hook(gw, 'pull_request', w.gh.push(pr));
    expect((await w.hook(gw, 'pull_request_review', late)).status).toBe(202);
    expect(await w.call(c, 'echo', { message: 'late-review' })).toMatchObject({ ok: false, code: -32011, data: { status: 'pending' } });
    expect(w.calls('echo', 'late-review')).toBe(0);
    expect(w.approvalOf(gw, pr).remote?.headSha).toBe(w.gh.pulls.get(pr)!.head.sha);
    // An approval of the head that is there now releases it.
    await w.hook(gw, 'pull_request_review', w.gh.review(pr, { login: 'sam', state: 'approved' }));
    expect(await w.call(c, 'echo', { message: 'late-review' })).toMatchObject({ ok: true });
    expect(w.calls('echo', 'late-review')).toBe(1);
  });

  it('a dismissed review does not count (min_approvals 2: one approval dismissed, a second approval does not release it)', async () => {
    const gw = await w.start();
    const c = await w.client(gw);
    const pr = w.prOf(await w.call(c, 'add', { a: 1, b: 2 }));
    await w.hook(gw, 'pull_request_review', w.gh.review(pr, { login: 'sam', state: 'approved' }));
    await w.hook(gw, 'pull_request_review', w.gh.dismiss(pr, w.gh.reviewId(pr, 'sam'), 'sue'));
    await w.hook(gw, 'pull_request_review', w.gh.review(pr, { login: 'sue', state: 'approved' }));
    expect(await w.call(c, 'add', { a: 1, b: 2 })).toMatchObject({ ok: false, code: -32011, data: { status: 'pending' } });
    expect(w.approvalOf(gw, pr).approvals.map((v) => v.login)).toEqual(['sue']);
    // sam approves again: two approvals of the head now.
    await w.hook(gw, 'pull_request_review', w.gh.review(pr, { login: 'sam', state: 'approved' }));
    expect(await w.call(c, 'add', { a: 1, b: 2 })).toEqual({ ok: true, content: [{ type: 'text', text: '3' }] });
  });

  it('an approval dismissed after it was approved, before the retry, releases nothing', async () => {
    const gw = await w.start();
    const c = await w.client(gw);
    const pr = w.prOf(await w.call(c, 'echo', { message: 'dismissed-late' }));
    await w.hook(gw, 'pull_request_review', w.gh.review(pr, { login: 'sam', state: 'approved' }));
    expect(w.approvalOf(gw, pr).status).toBe('approved');
    // Dismissed, and the webhook for it is lost: the release itself reads GitHub again.
    w.gh.dismiss(pr, w.gh.reviewId(pr, 'sam'), 'sue');
    expect(await w.call(c, 'echo', { message: 'dismissed-late' })).toMatchObject({ ok: false, code: -32011, data: { status: 'pending' } });
    expect(w.calls('echo', 'dismissed-late')).toBe(0);
  });

  it('the same signed body under a new X-GitHub-Delivery changes nothing the API does not say', async () => {
    const gw = await w.start();
    const c = await w.client(gw);
    const pr = w.prOf(await w.call(c, 'add', { a: 2, b: 3 }));
    const samOnH1 = w.gh.review(pr, { login: 'sam', state: 'approved' });
    await w.hook(gw, 'pull_request_review', samOnH1, { delivery: 'd-1' });
    await w.hook(gw, 'pull_request', w.gh.push(pr), { delivery: 'd-2' });
    await w.hook(gw, 'pull_request_review', w.gh.review(pr, { login: 'sue', state: 'approved' }), { delivery: 'd-3' });
    const expected = { head: w.gh.pulls.get(pr)!.head.sha, approvals: ['sue'] };
    const seen = () => ({ head: w.approvalOf(gw, pr).remote?.headSha, approvals: w.approvalOf(gw, pr).approvals.map((v) => v.login) });
    expect(seen()).toEqual(expected);
    // sam's old approval (of H1, whose payload names H1 as the head) replayed under new ids.
    for (const delivery of ['d-4', 'd-5']) {
      expect((await w.hook(gw, 'pull_request_review', samOnH1, { delivery })).status).toBe(202);
      expect(seen()).toEqual(expected);
    }
    // The id already seen is a duplicate.
    expect((await w.hook(gw, 'pull_request_review', samOnH1, { delivery: 'd-1' })).body).toEqual({ duplicate: true, delivery: 'd-1' });
    expect(await w.call(c, 'add', { a: 2, b: 3 })).toMatchObject({ ok: false, code: -32011 });
  });

  it('a validly signed payload claiming an approval GitHub does not have changes nothing', async () => {
    const gw = await w.start();
    const c = await w.client(gw);
    const pr = w.prOf(await w.call(c, 'echo', { message: 'claimed' }));
    // A payload with sam's approval of the head, signed with the secret (leaked, or sent by anyone who has it).
    const claim = w.gh.review(pr, { login: 'sam', state: 'approved' });
    w.gh.pulls.get(pr)!.reviews.pop();
    expect((await w.hook(gw, 'pull_request_review', claim)).status).toBe(202);
    expect(await w.call(c, 'echo', { message: 'claimed' })).toMatchObject({ ok: false, code: -32011, data: { status: 'pending' } });
    // A payload saying the PR was merged by an eligible user, when it was not.
    const merged = w.gh.closePull(pr, 'sue', true);
    Object.assign(w.gh.pulls.get(pr)!, { state: 'open', merged: false, merged_by: null, closed_by: null });
    expect((await w.hook(gw, 'pull_request', merged)).status).toBe(202);
    expect(await w.call(c, 'echo', { message: 'claimed' })).toMatchObject({ ok: false, code: -32011, data: { status: 'pending' } });
    expect(w.calls('echo', 'claimed')).toBe(0);
  });

  it('a webhook about a pull request of another repository is not looked at', async () => {
    const gw = await w.start();
    const c = await w.client(gw);
    const pr = w.prOf(await w.call(c, 'echo', { message: 'other-repo' }));
    // Same secret (an org webhook), same PR number, another repository: sam approved *that* PR.
    const other = w.gh.review(pr, { login: 'sam', state: 'approved' });
    w.gh.pulls.get(pr)!.reviews.pop();
    const repository = other.repository as Record<string, unknown>;
    Object.assign(repository, { name: 'other', full_name: 'acme/other' });
    const before = w.gh.requests.length;
    expect((await w.hook(gw, 'pull_request_review', other)).status).toBe(202);
    expect(w.gh.requests.length).toBe(before);
    expect(await w.call(c, 'echo', { message: 'other-repo' })).toMatchObject({ ok: false, code: -32011 });
    expect(w.calls('echo', 'other-repo')).toBe(0);
  });
});
