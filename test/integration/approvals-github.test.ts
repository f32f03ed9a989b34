import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { McpError } from '@modelcontextprotocol/sdk/types.js';
import { Octokit } from '@octokit/rest';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
// @ts-expect-error plain JS fixture
import { startHttpServer } from '../fixtures/demo-server.mjs';
import { connectClient } from '../helpers/client.js';
import { ManualClock } from '../helpers/clock.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { GitHubEmulator } from '../helpers/github-emulator.js';
import { makePolicyDir, TEST_POLICY_DATA } from '../helpers/policy.js';

const SECRET = 'webhook-secret-for-tests';
process.env.GITGATE_TEST_GH_TOKEN = 'ghs_emulatortoken';
process.env.GITGATE_TEST_WEBHOOK_SECRET = SECRET;

interface Upstream {
  url: string;
  calls: { tool: string; message?: string }[];
  close(): Promise<void>;
}

const policyData = {
  ...TEST_POLICY_DATA,
  upstreams: {
    gh: {
      full_access_groups: ['eng'],
      public_tools: [],
      high_risk_tools: {
        secret: { approvers: ['@acme/security', 'ops-lead'], min_approvals: 1, ttl_seconds: 900 },
        echo: { approvers: ['@acme/security'], min_approvals: 1, ttl_seconds: 900 },
        add: { approvers: ['@acme/security'], min_approvals: 2, ttl_seconds: 900 },
        mutable: { approvers: ['@acme/security'], min_approvals: 1, ttl_seconds: 2 },
      },
      mask: [],
      credential_ttl_seconds: 60,
    },
  },
};

type Outcome =
  | { ok: true; content: unknown }
  | {
      ok: false;
      code: number;
      message: string;
      data: { approval_id: string; url: string; status: string; expires_at: string };
    };

describe('the GitHub emulator is honest', () => {
  it('records requests GitHub would reject (unknown route, body against the OpenAPI schema, unknown query parameter, no auth)', async () => {
    const gh = await new GitHubEmulator().start();
    try {
      const post = (path: string, body: unknown, auth = true) =>
        fetch(`${gh.url}${path}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...(auth ? { authorization: 'token x' } : {}) },
          body: JSON.stringify(body),
        });
      await post('/repos/acme/approvals/pulls', { title: 5, head: 'x', base: 'main' });
      await post('/repos/acme/approvals/check-runs', { name: 'gitgate/approval' }, false);
      await post('/repos/acme/approvals/no-such-thing', {});
      await fetch(`${gh.url}/repos/acme/approvals/pulls/1/reviews?per_page=100&head=x`, {
        headers: { authorization: 'token x' },
      });
      expect(gh.violations).toEqual([
        expect.stringMatching(/^pulls\/create: .*title/),
        expect.stringMatching(/^checks\/create: .*head_sha/),
        'checks/create: no Authorization header',
        "POST /repos/acme/approvals/no-such-thing: no such operation in GitHub's REST API",
        'pulls/list-reviews: unknown query parameter head',
      ]);
    } finally {
      await gh.close();
    }
  });

  it('paginates lists with Link headers, as GitHub does (octokit follows them)', async () => {
    const gh = await new GitHubEmulator().start();
    try {
      gh.pulls.set(7, {
        number: 7,
        title: 't',
        body: '',
        head: { ref: 'x', sha: 'h' },
        base: { ref: 'main' },
        state: 'open',
        merged: false,
        merged_by: null,
        closed_by: null,
        user: gh.actor,
        requested_reviewers: [],
        requested_teams: [],
        reviews: [],
      });
      for (let i = 0; i < 230; i++) gh.review(7, { login: `user${i}`, state: 'commented' });
      const octokit = new Octokit({ baseUrl: gh.url, auth: 'x' });
      const first = await octokit.rest.pulls.listReviews({
        owner: 'acme',
        repo: 'approvals',
        pull_number: 7,
        per_page: 100,
      });
      expect(first.data).toHaveLength(100);
      expect(first.headers.link).toMatch(/page=2>; rel="next"/);
      const all = await octokit.paginate(octokit.rest.pulls.listReviews, {
        owner: 'acme',
        repo: 'approvals',
        pull_number: 7,
        per_page: 100,
      });
      expect(all.map((r) => r.user?.login)).toEqual(Array.from({ length: 230 }, (_, i) => `user${i}`));
      expect(gh.count('pulls/list-reviews')).toBe(4);
      expect(gh.violations).toEqual([]);
    } finally {
      await gh.close();
    }
  });
});

describe('approvals on GitHub (emulated at the HTTP level, checked against its OpenAPI description)', () => {
  let gh: GitHubEmulator;
  let upstream: Upstream;
  let policyDir: string;
  const gateways: TestGateway[] = [];

  const start = async (extra: Record<string, unknown> = {}, dataDir?: string, clock?: ManualClock) => {
    const gw = await startGateway({
      policyDir,
      upstreams: { gh: { url: upstream.url } },
      approvals: {
        provider: 'github',
        github: { baseUrl: gh.url, owner: 'acme', repo: 'approvals', token: { fromEnv: 'GITGATE_TEST_GH_TOKEN' } },
        webhookSecret: { fromEnv: 'GITGATE_TEST_WEBHOOK_SECRET' },
        pollSeconds: 3600,
        ...extra,
      },
      ...(dataDir ? { dataDir } : {}),
      ...(clock ? { options: { approvalClock: clock } } : {}),
    });
    gateways.push(gw);
    return gw;
  };

  // One gateway for the tests that need nothing of their own (default config, own clock-free
  // approvals, each with its own arguments and so its own approval and pull request).
  let sharedGateway: Promise<TestGateway> | undefined;
  const shared = () => {
    sharedGateway ??= startGateway({
      policyDir,
      upstreams: { gh: { url: upstream.url } },
      approvals: {
        provider: 'github',
        github: { baseUrl: gh.url, owner: 'acme', repo: 'approvals', token: { fromEnv: 'GITGATE_TEST_GH_TOKEN' } },
        webhookSecret: { fromEnv: 'GITGATE_TEST_WEBHOOK_SECRET' },
        pollSeconds: 3600,
      },
    });
    return sharedGateway;
  };

  beforeAll(async () => {
    gh = await new GitHubEmulator().start();
    gh.team('acme', 'security', ['sam', 'sue', 'alice-gh']);
    upstream = (await startHttpServer()) as Upstream;
    policyDir = await makePolicyDir(policyData);
  });
  afterEach(async () => {
    expect(gh.violations).toEqual([]);
    for (const g of gateways.splice(0)) await g.close().catch(() => undefined);
  });
  afterAll(async () => {
    await (await sharedGateway)?.close();
    for (const g of gateways) await g.close().catch(() => undefined);
    await upstream.close();
    await gh.close();
  });

  async function client(gw: TestGateway) {
    return connectClient(`${gw.url}/mcp/gh`, await gw.token('alice', ['eng'], { githubLogin: 'alice-gh' }));
  }
  async function call(
    c: Awaited<ReturnType<typeof client>>,
    name: string,
    args: Record<string, unknown>,
  ): Promise<Outcome> {
    try {
      const r = await c.client.callTool({ name, arguments: args });
      return { ok: true, content: r.content };
    } catch (e) {
      const err = e as McpError;
      return {
        ok: false,
        code: err.code,
        message: err.message,
        data: err.data as Extract<Outcome, { ok: false }>['data'],
      };
    }
  }
  const prOf = (o: Outcome) => Number(/\/pull\/(\d+)$/.exec((o as Extract<Outcome, { ok: false }>).data.url)![1]);
  const calls = (tool: string, message?: string) =>
    upstream.calls.filter((c) => c.tool === tool && (message === undefined || c.message === message)).length;

  it('approve releases: the identical retry executes exactly once; the PR shows the outcome', async () => {
    const gw = await shared();
    const c = await client(gw);
    const first = await call(c, 'echo', { message: 'approve-me' });
    expect(first).toMatchObject({ ok: false, code: -32011, data: { status: 'pending' } });
    const pr = prOf(first);
    const pull = gh.pulls.get(pr)!;
    expect(pull.title).toBe('gitgate approval: alice-gh → gh tools/call echo');
    expect(pull.body).toContain('"message": "approve-me"');
    expect(pull.requested_teams).toEqual(['security']);
    expect(gh.files.get(`${pull.head.ref}:approvals/${first.ok ? '' : first.data.approval_id}.yaml`)).toContain(
      'tool: "echo"',
    );
    const check = [...gh.checkRuns.values()].at(-1)!;
    expect(check).toMatchObject({ name: 'gitgate/approval', status: 'in_progress', head_sha: pull.head.sha });

    const hook = await gh.deliver(
      `${gw.url}/webhooks/github`,
      'pull_request_review',
      gh.review(pr, { login: 'sam', state: 'approved' }),
      SECRET,
    );
    expect(hook.status).toBe(202);
    expect(await call(c, 'echo', { message: 'approve-me' })).toEqual({
      ok: true,
      content: [{ type: 'text', text: 'echo: approve-me' }],
    });
    expect(calls('echo', 'approve-me')).toBe(1);
    // Used once: the next identical call needs a new approval.
    const again = await call(c, 'echo', { message: 'approve-me' });
    expect(again).toMatchObject({ ok: false, code: -32011 });
    expect(prOf(again)).not.toBe(pr);
    expect(calls('echo', 'approve-me')).toBe(1);
    await expect.poll(() => check.status).toBe('completed');
    expect(check.conclusion).toBe('success');
    expect(gh.comments.some((x) => x.issue === pr && /released to gh/.test(x.body))).toBe(true);
    expect(gh.pulls.get(pr)!.state).toBe('closed');
    await c.close();
  });

  it('a merge by an eligible user releases; a merge by someone eligible only for other tools denies (a merged PR gathers no more)', async () => {
    const gw = await shared();
    const c = await client(gw);
    const first = await call(c, 'echo', { message: 'merge-me' });
    // ops-lead may approve `secret`, not `echo`.
    await gh.deliver(`${gw.url}/webhooks/github`, 'pull_request', gh.closePull(prOf(first), 'ops-lead', true), SECRET);
    const denied = await call(c, 'echo', { message: 'merge-me' });
    expect(denied).toMatchObject({ ok: false, code: -32019, data: { status: 'denied' } });
    expect((denied as { message: string }).message).toContain('merged by ops-lead with 0 of 1 required approval(s)');
    const second = await call(c, 'echo', { message: 'merge-me-too' });
    await gh.deliver(`${gw.url}/webhooks/github`, 'pull_request', gh.closePull(prOf(second), 'sam', true), SECRET);
    expect(await call(c, 'secret', {})).toMatchObject({ ok: false }); // another call is not released by it
    expect(await call(c, 'echo', { message: 'merge-me-too' })).toMatchObject({ ok: true });
    expect(calls('echo', 'merge-me')).toBe(0);
    await c.close();
  });

  it('changes requested denies, with the reviewer comment as the reason', async () => {
    const gw = await shared();
    const c = await client(gw);
    const first = await call(c, 'echo', { message: 'deny-me' });
    await gh.deliver(
      `${gw.url}/webhooks/github`,
      'pull_request_review',
      gh.review(prOf(first), { login: 'sue', state: 'changes_requested', body: 'Not during the freeze.' }),
      SECRET,
    );
    const denied = await call(c, 'echo', { message: 'deny-me' });
    expect(denied).toMatchObject({ ok: false, code: -32019, data: { status: 'denied' } });
    expect((denied as { message: string }).message).toContain('sue: Not during the freeze.');
    expect(calls('echo', 'deny-me')).toBe(0);
    await expect
      .poll(
        () => [...gh.checkRuns.values()].find((r) => r.head_sha === gh.pulls.get(prOf(first))!.head.sha)?.conclusion,
      )
      .toBe('failure');
    await c.close();
  });

  it('closing without merge denies', async () => {
    const gw = await shared();
    const c = await client(gw);
    const first = await call(c, 'echo', { message: 'close-me' });
    await gh.deliver(`${gw.url}/webhooks/github`, 'pull_request', gh.closePull(prOf(first), 'sam', false), SECRET);
    expect(await call(c, 'echo', { message: 'close-me' })).toMatchObject({ ok: false, code: -32019 });
    expect(calls('echo', 'close-me')).toBe(0);
    await c.close();
  });

  it('self-approval, ineligible reviewers and reviews of a stale commit are ignored', async () => {
    const gw = await shared();
    const c = await client(gw);
    const first = await call(c, 'echo', { message: 'ignore-me' });
    const pr = prOf(first);
    const url = `${gw.url}/webhooks/github`;
    await gh.deliver(url, 'pull_request_review', gh.review(pr, { login: 'alice-gh', state: 'approved' }), SECRET); // the requester (in the team)
    await gh.deliver(url, 'pull_request_review', gh.review(pr, { login: 'mallory', state: 'approved' }), SECRET); // not eligible
    const oldHead = gh.pulls.get(pr)!.head.sha;
    gh.push(pr);
    await gh.deliver(
      url,
      'pull_request_review',
      gh.review(pr, { login: 'sam', state: 'approved', commit: oldHead }),
      SECRET,
    ); // stale
    expect(await call(c, 'echo', { message: 'ignore-me' })).toMatchObject({
      ok: false,
      code: -32011,
      data: { status: 'pending' },
    });
    expect(calls('echo', 'ignore-me')).toBe(0);
    // The requester cannot deny it either; an eligible approval of the head does release it.
    await gh.deliver(url, 'pull_request_review', gh.review(pr, { login: 'sue', state: 'approved' }), SECRET);
    expect(await call(c, 'echo', { message: 'ignore-me' })).toMatchObject({ ok: true });
    await c.close();
  });

  it('2-of-N counts distinct eligible users', async () => {
    const gw = await shared();
    const c = await client(gw);
    const first = await call(c, 'add', { a: 1, b: 2 });
    const pr = prOf(first);
    const url = `${gw.url}/webhooks/github`;
    await gh.deliver(url, 'pull_request_review', gh.review(pr, { login: 'sam', state: 'approved' }), SECRET);
    await gh.deliver(url, 'pull_request_review', gh.review(pr, { login: 'sam', state: 'approved' }), SECRET);
    expect(await call(c, 'add', { a: 1, b: 2 })).toMatchObject({ ok: false, code: -32011 });
    await gh.deliver(url, 'pull_request_review', gh.review(pr, { login: 'sue', state: 'approved' }), SECRET);
    expect(await call(c, 'add', { a: 1, b: 2 })).toEqual({ ok: true, content: [{ type: 'text', text: '3' }] });
    await c.close();
  });

  it('a forged signature changes nothing; a replayed delivery id is a duplicate', async () => {
    const gw = await shared();
    const c = await client(gw);
    const first = await call(c, 'echo', { message: 'forge-me' });
    const pr = prOf(first);
    const url = `${gw.url}/webhooks/github`;
    const before = gh.requests.length;
    const forged = await gh.deliver(
      url,
      'pull_request_review',
      gh.review(pr, { login: 'sam', state: 'commented' }),
      'not-the-secret',
    );
    expect(forged.status).toBe(401);
    const bad = await gh.deliver(
      url,
      'pull_request_review',
      gh.review(pr, { login: 'sam', state: 'commented' }),
      SECRET,
      { signature: 'sha256=00' },
    );
    expect(bad.status).toBe(401);
    // Refused before anything is read from GitHub.
    expect(gh.requests.length).toBe(before);
    const once = await gh.deliver(
      url,
      'pull_request_review',
      gh.review(pr, { login: 'sam', state: 'commented' }),
      SECRET,
      { delivery: 'delivery-1' },
    );
    const replay = await gh.deliver(
      url,
      'pull_request_review',
      gh.review(pr, { login: 'sam', state: 'commented' }),
      SECRET,
      { delivery: 'delivery-1' },
    );
    expect(once.status).toBe(202);
    expect(replay).toEqual({ status: 200, body: { duplicate: true, delivery: 'delivery-1' } });
    expect(await call(c, 'echo', { message: 'forge-me' })).toMatchObject({ ok: false, code: -32011 });
    expect(calls('echo', 'forge-me')).toBe(0);
    await c.close();
  });

  it('an approval for arguments A does not release arguments B', async () => {
    const gw = await shared();
    const c = await client(gw);
    const a = await call(c, 'echo', { message: 'A' });
    await gh.deliver(
      `${gw.url}/webhooks/github`,
      'pull_request_review',
      gh.review(prOf(a), { login: 'sam', state: 'approved' }),
      SECRET,
    );
    const b = await call(c, 'echo', { message: 'B' });
    expect(b).toMatchObject({ ok: false, code: -32011 });
    expect(prOf(b)).not.toBe(prOf(a));
    expect(calls('echo', 'B')).toBe(0);
    expect(await call(c, 'echo', { message: 'A' })).toMatchObject({ ok: true });
    await c.close();
  });

  it('expiry denies (on the approvals clock: no waiting)', async () => {
    const clock = new ManualClock(Date.now());
    const gw = await start({}, undefined, clock);
    const c = await client(gw);
    const first = await call(c, 'mutable', {});
    expect(first).toMatchObject({ ok: false, code: -32011 });
    clock.advance(2001);
    await gw.gw.approvals.poll();
    // An approval that arrives after the TTL releases nothing: the retry asks anew.
    await gh.deliver(
      `${gw.url}/webhooks/github`,
      'pull_request_review',
      gh.review(prOf(first), { login: 'sam', state: 'approved' }),
      SECRET,
    );
    const out = await call(c, 'mutable', {});
    expect(out).toMatchObject({ ok: false, code: -32011 });
    expect(prOf(out)).not.toBe(prOf(first));
    expect(gw.gw.approvals.list().find((a) => a.remote?.ref === String(prOf(first)))?.status).toBe('expired');
    await c.close();
  });

  it('expiry while the call is held denies it, saying so (on the approvals clock: no waiting)', async () => {
    const clock = new ManualClock(Date.now());
    const gw = await start({ holdSeconds: 20 }, undefined, clock);
    const c = await client(gw);
    const held = call(c, 'mutable', { held: true });
    // Held: its approval is open on GitHub and the hold waits on the clock.
    await expect
      .poll(() => gw.gw.approvals.list().some((a) => a.call.tool === 'mutable' && a.remote !== undefined))
      .toBe(true);
    await expect.poll(() => clock.pendingTimers).toBeGreaterThan(0);
    // The TTL (2 s) runs out long before the hold bound (20 s).
    clock.advance(2_051);
    const out = await held;
    expect(out).toMatchObject({ ok: false, code: -32019, data: { status: 'expired' } });
    expect((out as { message: string }).message).toMatch(/the approval expired at/);
    await c.close();
  });

  it('hold mode: progress carries the PR link and the result comes back on the same request', async () => {
    const gw = await start({ holdSeconds: 20 });
    const c = await client(gw);
    const progress: string[] = [];
    const pending = c.client.callTool({ name: 'echo', arguments: { message: 'hold-me' } }, undefined, {
      onprogress: (p) => progress.push(p.message ?? ''),
      timeout: 30_000,
    });
    await expect.poll(() => progress.length, { timeout: 10_000 }).toBeGreaterThan(0);
    const pr = Number(/\/pull\/(\d+)/.exec(progress[0]!)![1]);
    expect(progress[0]).toMatch(/Waiting for approval .*https:\/\/github\.test\/acme\/approvals\/pull\/\d+/);
    await gh.deliver(
      `${gw.url}/webhooks/github`,
      'pull_request_review',
      gh.review(pr, { login: 'sam', state: 'approved' }),
      SECRET,
    );
    expect((await pending).content).toEqual([{ type: 'text', text: 'echo: hold-me' }]);
    expect(calls('echo', 'hold-me')).toBe(1);
    await c.close();
  });

  it('authenticates as a GitHub App: app JWT exchanged for an installation token, used for every call', async () => {
    const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const keyFile = path.join(mkdtempSync(path.join(tmpdir(), 'gitgate-app-')), 'app.pem');
    writeFileSync(keyFile, privateKey.export({ format: 'pem', type: 'pkcs8' }));
    gh.installations.set(4242, { appId: 77, publicKey: publicKey.export({ format: 'pem', type: 'spki' }).toString() });
    const gw = await start({
      github: {
        baseUrl: gh.url,
        owner: 'acme',
        repo: 'approvals',
        app: { appId: 77, installationId: 4242, privateKey: { fromFile: keyFile } },
      },
    });
    const before = gh.auth.length;
    const c = await client(gw);
    const first = await call(c, 'echo', { message: 'as-an-app' });
    expect(first).toMatchObject({ ok: false, code: -32011 });
    const used = gh.auth.slice(before);
    expect(used[0]).toMatchObject({
      operationId: 'apps/create-installation-access-token',
      authorization: expect.stringMatching(/^bearer ey/i),
    });
    for (const u of used.slice(1)) expect(u.authorization).toBe('token ghs_installation_4242');
    await gh.deliver(
      `${gw.url}/webhooks/github`,
      'pull_request_review',
      gh.review(prOf(first), { login: 'sam', state: 'approved' }),
      SECRET,
    );
    expect(await call(c, 'echo', { message: 'as-an-app' })).toMatchObject({ ok: true });
    await c.close();
  });

  it('a restart while pending still releases on approval; a lost webhook is made up by polling', async () => {
    const first = await start();
    const dataDir = first.dataDir;
    const c1 = await client(first);
    const parked = await call(c1, 'echo', { message: 'survive-restart' });
    const pr = prOf(parked);
    await c1.close();
    await first.close();
    // Approved while gitgate is down: the webhook is lost.
    gh.review(pr, { login: 'sue', state: 'approved' });
    const second = await start({ pollSeconds: 0.2 }, dataDir);
    const c2 = await client(second);
    await expect
      .poll(() => second.gw.approvals.list().find((a) => a.remote?.ref === String(pr))?.status, { timeout: 5000 })
      .toBe('approved');
    expect(await call(c2, 'echo', { message: 'survive-restart' })).toMatchObject({ ok: true });
    expect(calls('echo', 'survive-restart')).toBe(1);
    await c2.close();
  });
});
