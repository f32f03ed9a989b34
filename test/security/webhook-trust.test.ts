import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/load.js';
import { DeliveryLog, GitHubWebhooks, signBody } from '../../src/webhooks/verify-and-receive.js';
import { GitHubApprovalWorld, SECRET } from '../helpers/github-approvals.js';

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
    const gw = await w.shared();
    const c = await w.client(gw);
    const pr = w.prOf(await w.call(c, 'echo', { message: 'late-review' }));
    // sam approves head H1; GitHub's webhook for it is delayed until after a push moved the head to H2.
    const late = w.gh.review(pr, { login: 'sam', state: 'approved' });
    await w.hook(gw, 'pull_request', w.gh.push(pr));
    expect((await w.hook(gw, 'pull_request_review', late)).status).toBe(202);
    expect(await w.call(c, 'echo', { message: 'late-review' })).toMatchObject({
      ok: false,
      code: -32011,
      data: { status: 'pending' },
    });
    expect(w.calls('echo', 'late-review')).toBe(0);
    expect(w.approvalOf(gw, pr).remote?.headSha).toBe(w.gh.pulls.get(pr)!.head.sha);
    // An approval of the head that is there now releases it.
    await w.hook(gw, 'pull_request_review', w.gh.review(pr, { login: 'sam', state: 'approved' }));
    expect(await w.call(c, 'echo', { message: 'late-review' })).toMatchObject({ ok: true });
    expect(w.calls('echo', 'late-review')).toBe(1);
  });

  it('a dismissed review does not count (min_approvals 2: one approval dismissed, a second approval does not release it)', async () => {
    const gw = await w.shared();
    const c = await w.client(gw);
    const pr = w.prOf(await w.call(c, 'add', { a: 1, b: 2 }));
    await w.hook(gw, 'pull_request_review', w.gh.review(pr, { login: 'sam', state: 'approved' }));
    await w.hook(gw, 'pull_request_review', w.gh.dismiss(pr, w.gh.reviewId(pr, 'sam'), 'sue'));
    await w.hook(gw, 'pull_request_review', w.gh.review(pr, { login: 'sue', state: 'approved' }));
    expect(await w.call(c, 'add', { a: 1, b: 2 })).toMatchObject({
      ok: false,
      code: -32011,
      data: { status: 'pending' },
    });
    expect(w.approvalOf(gw, pr).approvals.map((v) => v.login)).toEqual(['sue']);
    // sam approves again: two approvals of the head now.
    await w.hook(gw, 'pull_request_review', w.gh.review(pr, { login: 'sam', state: 'approved' }));
    expect(await w.call(c, 'add', { a: 1, b: 2 })).toEqual({ ok: true, content: [{ type: 'text', text: '3' }] });
  });

  it('an approval dismissed after it was approved, before the retry, releases nothing', async () => {
    const gw = await w.shared();
    const c = await w.client(gw);
    const pr = w.prOf(await w.call(c, 'echo', { message: 'dismissed-late' }));
    await w.hook(gw, 'pull_request_review', w.gh.review(pr, { login: 'sam', state: 'approved' }));
    expect(w.approvalOf(gw, pr).status).toBe('approved');
    // Dismissed, and the webhook for it is lost: the release itself reads GitHub again.
    w.gh.dismiss(pr, w.gh.reviewId(pr, 'sam'), 'sue');
    expect(await w.call(c, 'echo', { message: 'dismissed-late' })).toMatchObject({
      ok: false,
      code: -32011,
      data: { status: 'pending' },
    });
    expect(w.calls('echo', 'dismissed-late')).toBe(0);
  });

  it('the same signed body under a new X-GitHub-Delivery changes nothing the API does not say', async () => {
    const gw = await w.shared();
    const c = await w.client(gw);
    const pr = w.prOf(await w.call(c, 'add', { a: 2, b: 3 }));
    const samOnH1 = w.gh.review(pr, { login: 'sam', state: 'approved' });
    await w.hook(gw, 'pull_request_review', samOnH1, { delivery: 'd-1' });
    await w.hook(gw, 'pull_request', w.gh.push(pr), { delivery: 'd-2' });
    await w.hook(gw, 'pull_request_review', w.gh.review(pr, { login: 'sue', state: 'approved' }), { delivery: 'd-3' });
    const expected = { head: w.gh.pulls.get(pr)!.head.sha, approvals: ['sue'] };
    const seen = () => ({
      head: w.approvalOf(gw, pr).remote?.headSha,
      approvals: w.approvalOf(gw, pr).approvals.map((v) => v.login),
    });
    expect(seen()).toEqual(expected);
    // sam's old approval (of H1, whose payload names H1 as the head) replayed under new ids.
    for (const delivery of ['d-4', 'd-5']) {
      expect((await w.hook(gw, 'pull_request_review', samOnH1, { delivery })).status).toBe(202);
      expect(seen()).toEqual(expected);
    }
    // The id already seen is a duplicate.
    expect((await w.hook(gw, 'pull_request_review', samOnH1, { delivery: 'd-1' })).body).toEqual({
      duplicate: true,
      delivery: 'd-1',
    });
    expect(await w.call(c, 'add', { a: 2, b: 3 })).toMatchObject({ ok: false, code: -32011 });
  });

  it("every page of reviews is read: a reviewer's latest decision after 150 comments is the one that counts", async () => {
    const gw = await w.shared();
    const c = await w.client(gw);
    const pr = w.prOf(await w.call(c, 'echo', { message: 'paged' }));
    await w.hook(gw, 'pull_request_review', w.gh.review(pr, { login: 'sam', state: 'approved' }));
    for (let i = 0; i < 150; i++) w.gh.review(pr, { login: `drive-by-${i}`, state: 'commented' });
    // sam takes it back on page 2: the approval on page 1 is no longer sam's decision.
    const last = w.gh.review(pr, { login: 'sam', state: 'changes_requested', body: 'On second thought, no.' });
    const pages = w.gh.count('pulls/list-reviews');
    await w.hook(gw, 'pull_request_review', last);
    expect(w.gh.count('pulls/list-reviews') - pages).toBe(2);
    expect(await w.call(c, 'echo', { message: 'paged' })).toMatchObject({
      ok: false,
      code: -32019,
      message: expect.stringContaining('On second thought, no.'),
    });
    expect(w.calls('echo', 'paged')).toBe(0);
  });

  it('a validly signed payload claiming an approval GitHub does not have changes nothing', async () => {
    const gw = await w.shared();
    const c = await w.client(gw);
    const pr = w.prOf(await w.call(c, 'echo', { message: 'claimed' }));
    // A payload with sam's approval of the head, signed with the secret (leaked, or sent by anyone who has it).
    const claim = w.gh.review(pr, { login: 'sam', state: 'approved' });
    w.gh.pulls.get(pr)!.reviews.pop();
    expect((await w.hook(gw, 'pull_request_review', claim)).status).toBe(202);
    expect(await w.call(c, 'echo', { message: 'claimed' })).toMatchObject({
      ok: false,
      code: -32011,
      data: { status: 'pending' },
    });
    // A payload saying the PR was merged by an eligible user, when it was not.
    const merged = w.gh.closePull(pr, 'sue', true);
    Object.assign(w.gh.pulls.get(pr)!, { state: 'open', merged: false, merged_by: null, closed_by: null });
    expect((await w.hook(gw, 'pull_request', merged)).status).toBe(202);
    expect(await w.call(c, 'echo', { message: 'claimed' })).toMatchObject({
      ok: false,
      code: -32011,
      data: { status: 'pending' },
    });
    expect(w.calls('echo', 'claimed')).toBe(0);
  });

  it('a webhook about a pull request of another repository is not looked at', async () => {
    const gw = await w.shared();
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

describe('who may send a webhook', () => {
  const dir = () => mkdtempSync(path.join(tmpdir(), 'gitgate-hooks-'));
  const receiver = (secret: string | undefined) => {
    const hooks = new GitHubWebhooks(secret, new DeliveryLog(dir()));
    const seen: unknown[] = [];
    let n = 0;
    hooks.on('ping', async (p) => void seen.push(p));
    const send = (body: string, signature: string, delivery = `d-${++n}`) =>
      hooks.receive(
        { 'x-github-event': 'ping', 'x-github-delivery': delivery, 'x-hub-signature-256': signature },
        Buffer.from(body),
      );
    return { send, seen };
  };

  it('an empty webhook secret is refused when the config loads (from a file or the environment), never used as a key', () => {
    const d = dir();
    const file = path.join(d, 'secret');
    writeFileSync(file, '\n');
    const doc = (ref: Record<string, string>) => ({
      dataDir: d,
      identity: { mode: 'dev' },
      policy: { dir: d },
      upstreams: { u: { url: 'http://127.0.0.1:9/' } },
      approvals: { webhookSecret: ref },
    });
    expect(() => validateConfig(doc({ fromFile: file }), {}, d, 'test')).toThrow(
      /approvals\.webhookSecret: .* is empty/,
    );
    process.env.GITGATE_TEST_EMPTY_SECRET = '';
    try {
      expect(() => validateConfig(doc({ fromEnv: 'GITGATE_TEST_EMPTY_SECRET' }), {}, d, 'test')).toThrow(
        /approvals\.webhookSecret: environment variable GITGATE_TEST_EMPTY_SECRET is not set/,
      );
    } finally {
      delete process.env.GITGATE_TEST_EMPTY_SECRET;
    }
    expect(() => validateConfig(doc({ fromEnv: 'GITGATE_TEST_NO_SUCH_SECRET' }), {}, d, 'test')).toThrow(
      /CONFIG_INVALID|problem/,
    );
  });

  it('rotation: with a list of secrets, a body signed with any of them is accepted, with no other', async () => {
    const hooks = new GitHubWebhooks(['new-secret', 'old-secret'], new DeliveryLog(dir()));
    const seen: unknown[] = [];
    hooks.on('ping', async (p) => void seen.push(p));
    let n = 0;
    const send = (body: string, signature: string) =>
      hooks.receive(
        { 'x-github-event': 'ping', 'x-github-delivery': `r-${++n}`, 'x-hub-signature-256': signature },
        Buffer.from(body),
      );
    const body = '{"zen":"rotate"}';
    expect((await send(body, signBody('new-secret', body))).status).toBe(202);
    expect((await send(body, signBody('old-secret', body))).status).toBe(202);
    expect((await send(body, signBody('another-secret', body))).status).toBe(401);
    expect((await send(body, signBody('', body))).status).toBe(401);
    expect(seen).toHaveLength(2);
  });

  it('rotation in the config: every listed secret is read, and an empty one among them fails the load', () => {
    const d = dir();
    const doc = (refs: Record<string, string>[]) => ({
      dataDir: d,
      identity: { mode: 'dev' },
      policy: { dir: d },
      upstreams: { u: { url: 'http://127.0.0.1:9/' } },
      approvals: { webhookSecret: refs },
    });
    writeFileSync(path.join(d, 'new'), 'new-secret\n');
    writeFileSync(path.join(d, 'old'), 'old-secret\n');
    writeFileSync(path.join(d, 'empty'), '\n');
    const config = validateConfig(doc([{ fromFile: 'new' }, { fromFile: 'old' }]), {}, d, 'test');
    expect(config.approvals.webhookSecrets.map((s) => s.reveal())).toEqual(['new-secret', 'old-secret']);
    expect(() => validateConfig(doc([{ fromFile: 'new' }, { fromFile: 'empty' }]), {}, d, 'test')).toThrow(
      /approvals\.webhookSecret\[1\]: .* is empty/,
    );
    expect(() => validateConfig(doc([]), {}, d, 'test')).toThrow(/CONFIG_INVALID|problem/);
  });

  it('with an empty secret nothing is accepted, not even a body signed with the empty key', async () => {
    const { send, seen } = receiver('');
    const body = '{"zen":"x"}';
    expect((await send(body, signBody('', body))).status).toBe(404);
    expect(seen).toEqual([]);
  });

  it('a signature is exactly sha256=<64 hex digits> of the body with the secret: no trailing bytes, no truncation, no other secret', async () => {
    const { send, seen } = receiver(SECRET);
    const body = '{"zen":"y"}';
    const good = signBody(SECRET, body);
    for (const bad of [
      `${good}zz`,
      `${good}00`,
      good.slice(0, -2),
      `sha1=${good.slice(7)}`,
      ` ${good}`,
      signBody('another-secret', body),
      signBody(SECRET, `${body} `),
      'sha256=',
      '',
    ]) {
      expect((await send(body, bad)).status, bad).toBe(401);
    }
    expect(seen).toEqual([]);
    expect((await send(body, good.toUpperCase().replace('SHA256=', 'sha256='))).status).toBe(202);
    expect((await send(body, good)).status).toBe(202);
    expect(seen).toHaveLength(2);
  });

  it('a delivery id is handled once, also after a restart (the log is on disk); a failed one may be redelivered', async () => {
    const d = dir();
    let fail = true;
    const make = () => {
      const hooks = new GitHubWebhooks(SECRET, new DeliveryLog(d));
      hooks.on('ping', async () => {
        if (fail) throw new Error('GitHub is down');
      });
      return hooks;
    };
    const body = '{"zen":"z"}';
    const headers = {
      'x-github-event': 'ping',
      'x-github-delivery': 'old-1',
      'x-hub-signature-256': signBody(SECRET, body),
    };
    expect((await make().receive(headers, Buffer.from(body))).status).toBe(502);
    fail = false;
    expect((await make().receive(headers, Buffer.from(body))).status).toBe(202);
    expect((await make().receive(headers, Buffer.from(body))).body).toEqual({ duplicate: true, delivery: 'old-1' });
  });
});

describe('the event header is not signed', () => {
  const w = new GitHubApprovalWorld();
  beforeAll(() => w.setup());
  afterEach(async () => expect(await w.after()).toEqual([]));
  afterAll(() => w.teardown());

  it('a signed body sent under another X-GitHub-Event only makes gitgate look at GitHub again', async () => {
    const gw = await w.start();
    const c = await w.client(gw);
    const pr = w.prOf(await w.call(c, 'echo', { message: 'event-swap' }));
    const claim = w.gh.review(pr, { login: 'sam', state: 'approved' });
    w.gh.pulls.get(pr)!.reviews.pop();
    for (const event of ['pull_request', 'pull_request_review', 'push', 'check_run']) {
      expect((await w.hook(gw, event, claim)).status).toBe(202);
    }
    expect(await w.call(c, 'echo', { message: 'event-swap' })).toMatchObject({
      ok: false,
      code: -32011,
      data: { status: 'pending' },
    });
    expect(w.calls('echo', 'event-swap')).toBe(0);
  });
});
