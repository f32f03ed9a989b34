import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { McpError } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { approvalBody, approvalDocument, approvalTitle, inlineCode } from '../../src/approvals/request-text.js';
import type { ApprovalRecord } from '../../src/approvals/types.js';
import { loadPolicyFromDir } from '../../src/policy/local-source.js';
import type { TestGateway } from '../helpers/gateway.js';
import { GitHubApprovalWorld, HIGH_RISK } from '../helpers/github-approvals.js';
import { makePolicyDir, opa, TEST_POLICY_DATA } from '../helpers/policy.js';

/** An approval releases exactly the call that was reviewed, once, and only when given by the right people. */
const w = new GitHubApprovalWorld();
beforeAll(() => w.setup());
afterEach(async () => expect(await w.after()).toEqual([]));
afterAll(() => w.teardown());

describe('the requester never approves their own call', () => {
  it('a requester without a known GitHub login (sub alice.smith) is not released by one approval from their own account; the PR says so', async () => {
    w.gh.teams.get('acme/security')!.add('alice');
    try {
      const gw = await w.start();
      const c = await w.client(gw, 'alice.smith', {});
      const first = await w.call(c, 'echo', { message: 'unknown-login' });
      expect(first).toMatchObject({ ok: false, code: -32011 });
      const pr = w.prOf(first);
      // `alice` is alice.smith on GitHub; nothing ties the two names together.
      await w.hook(gw, 'pull_request_review', w.gh.review(pr, { login: 'alice', state: 'approved' }));
      expect(await w.call(c, 'echo', { message: 'unknown-login' })).toMatchObject({
        ok: false,
        code: -32011,
        data: { status: 'pending', required_approvals: 2 },
      });
      expect(w.calls('echo', 'unknown-login')).toBe(0);
      const body = w.gh.pulls.get(pr)!.body;
      expect(body).toContain("gitgate does not know the requester's GitHub login");
      expect(body).toContain('this request needs 2 approvals');
      await w.hook(gw, 'pull_request_review', w.gh.review(pr, { login: 'sue', state: 'approved' }));
      expect(await w.call(c, 'echo', { message: 'unknown-login' })).toMatchObject({ ok: true });
    } finally {
      w.gh.teams.get('acme/security')!.delete('alice');
    }
  });

  it('the requester is known by sub, email and its local part, case-insensitively, not only by login', async () => {
    const team = w.gh.teams.get('acme/security')!;
    team.add('asmith').add('sam-smith');
    try {
      const gw = await w.start();
      // GitHub login alice-gh; sub asmith; email Sam-Smith@corp.example.
      const c = await w.client(gw, 'asmith', { githubLogin: 'alice-gh', email: 'Sam-Smith@corp.example' });
      const pr = w.prOf(await w.call(c, 'echo', { message: 'many-names' }));
      for (const login of ['ASmith', 'sam-smith', 'Alice-GH']) {
        await w.hook(gw, 'pull_request_review', w.gh.review(pr, { login, state: 'approved' }));
        expect(await w.call(c, 'echo', { message: 'many-names' })).toMatchObject({
          ok: false,
          code: -32011,
          data: { status: 'pending' },
        });
      }
      // Nor can they deny it.
      await w.hook(gw, 'pull_request_review', w.gh.review(pr, { login: 'ASMITH', state: 'changes_requested' }));
      expect(w.approvalOf(gw, pr).status).toBe('pending');
      expect(w.calls('echo', 'many-names')).toBe(0);
      await w.hook(gw, 'pull_request_review', w.gh.review(pr, { login: 'sue', state: 'approved' }));
      expect(await w.call(c, 'echo', { message: 'many-names' })).toMatchObject({ ok: true });
    } finally {
      team.delete('asmith');
      team.delete('sam-smith');
    }
  });
});

describe("the operator's login mapping holds whatever the token claims", () => {
  it('alice, mapped to alice-gh in approvals.logins, cannot approve her own call with alice-gh when her token names another login', async () => {
    const gw = await w.start({ logins: { alice: 'alice-gh' } });
    const c = await w.client(gw, 'alice', { githubLogin: 'not-me' });
    const pr = w.prOf(await w.call(c, 'echo', { message: 'claimed-away' }));
    await w.hook(gw, 'pull_request_review', w.gh.review(pr, { login: 'alice-gh', state: 'approved' }));
    expect(await w.call(c, 'echo', { message: 'claimed-away' })).toMatchObject({
      ok: false,
      code: -32011,
      data: { status: 'pending' },
    });
    expect(w.calls('echo', 'claimed-away')).toBe(0);
    await w.hook(gw, 'pull_request_review', w.gh.review(pr, { login: 'sue', state: 'approved' }));
    expect(await w.call(c, 'echo', { message: 'claimed-away' })).toMatchObject({ ok: true });
  });
});

describe('only people who may approve, approve', () => {
  it("gitgate's own account (the PR author) approves nothing, even when it is an eligible approver", async () => {
    // gitgate's token is ops-lead's (a personal token), and ops-lead may approve `secret`.
    w.gh.actor = 'ops-lead';
    try {
      const gw = await w.start();
      const c = await w.client(gw);
      const pr = w.prOf(await w.call(c, 'secret', {}));
      expect(w.gh.pulls.get(pr)!.user).toBe('ops-lead');
      await w.hook(gw, 'pull_request', w.gh.closePull(pr, 'ops-lead', true));
      const out = await w.call(c, 'secret', {});
      expect(out).toMatchObject({ ok: false, code: -32019, data: { status: 'denied' } });
      expect(w.calls('secret')).toBe(0);
    } finally {
      w.gh.actor = 'gitgate[bot]';
    }
  });

  it('a reviewer removed from the team after approving releases nothing: the release asks GitHub afresh', async () => {
    const team = w.gh.teams.get('acme/security')!;
    team.add('tess');
    try {
      const gw = await w.start();
      const c = await w.client(gw);
      const pr = w.prOf(await w.call(c, 'echo', { message: 'removed' }));
      await w.hook(gw, 'pull_request_review', w.gh.review(pr, { login: 'tess', state: 'approved' }));
      expect(w.approvalOf(gw, pr).status).toBe('approved');
      team.delete('tess');
      // Within the membership cache: polls still see tess as a member.
      await gw.gw.approvals.poll();
      expect(w.approvalOf(gw, pr).status).toBe('approved');
      const asked = w.gh.count('teams/get-membership-for-user-in-org');
      expect(await w.call(c, 'echo', { message: 'removed' })).toMatchObject({
        ok: false,
        code: -32011,
        data: { status: 'pending' },
      });
      expect(w.gh.count('teams/get-membership-for-user-in-org')).toBeGreaterThan(asked);
      expect(w.calls('echo', 'removed')).toBe(0);
    } finally {
      team.delete('tess');
    }
  });

  it('the membership cache ends after 60 s on the approvals clock: a poll then revokes an approval whose reviewer left', async () => {
    const team = w.gh.teams.get('acme/security')!;
    team.add('tim');
    try {
      const gw = await w.start();
      const c = await w.client(gw);
      const pr = w.prOf(await w.call(c, 'echo', { message: 'cache' }));
      await w.hook(gw, 'pull_request_review', w.gh.review(pr, { login: 'tim', state: 'approved' }));
      team.delete('tim');
      w.clock.advance(59_000);
      await gw.gw.approvals.poll();
      expect(w.approvalOf(gw, pr).status).toBe('approved');
      w.clock.advance(2_000);
      await gw.gw.approvals.poll();
      expect(w.approvalOf(gw, pr)).toMatchObject({ status: 'pending', approvals: [] });
    } finally {
      team.delete('tim');
    }
  });

  it('a bot account approves nothing, even as a member of an eligible team', async () => {
    const gw = await w.shared();
    const c = await w.client(gw);
    const pr = w.prOf(await w.call(c, 'echo', { message: 'bot' }));
    await w.hook(gw, 'pull_request_review', w.gh.review(pr, { login: 'renovate[bot]', state: 'approved' }));
    expect(await w.call(c, 'echo', { message: 'bot' })).toMatchObject({
      ok: false,
      code: -32011,
      data: { status: 'pending' },
    });
    expect(w.calls('echo', 'bot')).toBe(0);
    await w.hook(gw, 'pull_request_review', w.gh.review(pr, { login: 'sue', state: 'approved' }));
    expect(await w.call(c, 'echo', { message: 'bot' })).toMatchObject({ ok: true });
  });
});

describe('one approval, one pull request', () => {
  const branchOf = (gw: Awaited<ReturnType<typeof w.start>>, message: string) => {
    const a = gw.gw.approvals.list().find((x) => (x.call.arguments as { message?: string }).message === message)!;
    return { a, branch: `gitgate/approval/${a.id}` };
  };

  it('a poll racing the call that opens its pull request opens nothing more; the client gets the link that is tracked', async () => {
    const gw = await w.start();
    const c = await w.client(gw);
    const before = w.gh.count('git/create-ref');
    const paused = w.gh.pause('pulls/create');
    const pending = w.call(c, 'echo', { message: 'race' });
    await paused.reached;
    await gw.gw.approvals.poll();
    paused.release();
    const first = await pending;
    const { a, branch } = branchOf(gw, 'race');
    expect(w.gh.count('git/create-ref') - before).toBe(1);
    expect(w.gh.pullsFor(branch)).toHaveLength(1);
    expect(first).toMatchObject({ ok: false, data: { url: a.remote?.url } });
    expect(a.remote?.ref).toBe(String(w.gh.pullsFor(branch)[0]!.number));
  });

  it("another gitgate sharing the repo (or this one after its data dir was reset) never adopts an earlier request's pull request", async () => {
    const a = await w.start();
    const ca = await w.client(a);
    const prA = w.prOf(await w.call(ca, 'echo', { message: 'shared-repo' }));
    await w.hook(a, 'pull_request_review', w.gh.review(prA, { login: 'sam', state: 'approved' }));
    expect(w.approvalOf(a, prA).status).toBe('approved');
    // A fresh data dir: the same caller, the same call, the same hash and generation.
    const b = await w.start();
    const out = await w.call(await w.client(b), 'echo', { message: 'shared-repo' });
    expect(out).toMatchObject({ ok: false, code: -32011, data: { status: 'pending' } });
    expect(w.prOf(out)).not.toBe(prA);
    expect(w.calls('echo', 'shared-repo')).toBe(0);
  });

  it('an open that failed after its pull request was made is finished by the poller, which adopts that pull request', async () => {
    const gw = await w.start();
    const c = await w.client(gw);
    w.gh.fail('checks/create');
    const first = await w.call(c, 'echo', { message: 'half-open' });
    expect(first).toMatchObject({ ok: false, code: -32011, data: { url: null } });
    const { a, branch } = branchOf(gw, 'half-open');
    await gw.gw.approvals.poll();
    expect(w.gh.pullsFor(branch)).toHaveLength(1);
    expect(a.remote?.ref).toBe(String(w.gh.pullsFor(branch)[0]!.number));
    const pr = w.prOf(await w.call(c, 'echo', { message: 'half-open' }));
    await w.hook(gw, 'pull_request_review', w.gh.review(pr, { login: 'sam', state: 'approved' }));
    expect(await w.call(c, 'echo', { message: 'half-open' })).toMatchObject({ ok: true });
  });
});

describe('an approval releases exactly the call that was reviewed', () => {
  it('an approval given under a policy that since asks more (or other approvers) of the call releases nothing', async () => {
    const first = await w.start();
    const c1 = await w.client(first);
    const pr = w.prOf(await w.call(c1, 'echo', { message: 'policy-changed' }));
    await w.hook(first, 'pull_request_review', w.gh.review(pr, { login: 'sam', state: 'approved' }));
    expect(w.approvalOf(first, pr).status).toBe('approved');
    expect(await w.after()).toEqual([]);
    // The same data dir, with a policy that now wants two approvals of echo.
    const stricter = await GitHubApprovalWorld.policy({ ...HIGH_RISK, echo: { ...HIGH_RISK.echo, min_approvals: 2 } });
    const second = await w.start({}, { dataDir: first.dataDir, policyDir: stricter });
    const c2 = await w.client(second);
    const out = await w.call(c2, 'echo', { message: 'policy-changed' });
    expect(out).toMatchObject({ ok: false, code: -32011, data: { status: 'pending', min_approvals: 2 } });
    expect(w.prOf(out)).not.toBe(pr);
    expect(w.approvalOf(second, pr)).toMatchObject({
      status: 'denied',
      denial: { by: 'gitgate', reason: expect.stringMatching(/^superseded/) },
    });
    expect(w.calls('echo', 'policy-changed')).toBe(0);
  });

  it('arguments that are not an object, or other params, are another call (not the one with {} the policy input shows)', async () => {
    const gw = await w.shared();
    const c = await w.client(gw);
    const first = await w.call(c, 'secret', {});
    await w.hook(gw, 'pull_request_review', w.gh.review(w.prOf(first), { login: 'sam', state: 'approved' }));
    expect(w.approvalOf(gw, w.prOf(first))).toMatchObject({ status: 'approved' });
    // Arguments that are not an object never get this far: they are invalid params (-32602), before the policy.
    for (const args of [['rm', '-rf'], '--all', null] as const) {
      expect(await w.call(c, 'secret', args, {})).toMatchObject({ ok: false, code: -32602 });
    }
    const other = await w.call(c, 'secret', {}, { task: { ttl: 60_000 } });
    expect(other).toMatchObject({ ok: false, code: -32011, data: { status: 'pending' } });
    expect((other as { data: { approval_id: string } }).data.approval_id).not.toBe(
      (first as { data: { approval_id: string } }).data.approval_id,
    );
    // What reviewers of those see is what would be sent.
    const shown = gw.gw.approvals
      .list()
      .find((a) => (a.call.otherParams as { task?: unknown } | undefined)?.task !== undefined)!;
    expect(w.gh.pulls.get(Number(shown.remote!.ref))!.body).toContain('"ttl": 60000');
    expect(w.calls('secret')).toBe(0);
    // The caller's own _meta reaches the upstream: another _meta is another call, and reviewers see it.
    const meta = await w.call(c, 'secret', {}, { _meta: { 'com.example/target': 'PRODUCTION' } });
    expect(meta).toMatchObject({ ok: false, code: -32011, data: { status: 'pending' } });
    const metaPr = w.gh.pulls.get(
      Number(gw.gw.approvals.get((meta as { data: { approval_id: string } }).data.approval_id)!.remote!.ref),
    )!;
    expect(metaPr.body).toContain('PRODUCTION');
    expect(w.calls('secret')).toBe(0);
    // _meta's progress token and the 2026 envelope are not part of the call; the reviewed call itself runs once.
    expect(await w.call(c, 'secret', {}, { _meta: { progressToken: 'p-1' } })).toMatchObject({ ok: true });
    expect(w.calls('secret')).toBe(1);
  });

  it('reviewers are told how many values they see masked: the call runs with them as sent', async () => {
    // The default policy's rule: credentials in the params are masked wherever they are shown.
    const policyDir = await GitHubApprovalWorld.policy(HIGH_RISK, [
      { path: '$.params', detectors: ['jwt', 'bearer_token'] },
    ]);
    const gw = await w.start({}, { policyDir });
    const c = await w.client(gw);
    // Shaped like a credential, a value is hidden from reviewers by the mask rules: they must know it is there.
    const jwt = `eyJhbGciOiJIUzI1NiJ9.${Buffer.from('{"sub":"rm -rf /"}').toString('base64url')}.c2lnbmF0dXJlLXZhbHVl`;
    const first = await w.call(c, 'secret', { target: 'prod', token: jwt });
    expect(first).toMatchObject({ ok: false, code: -32011, data: { status: 'pending' } });
    const a = gw.gw.approvals.get((first as { data: { approval_id: string } }).data.approval_id)!;
    expect(a.call.masked).toBe(1);
    const body = w.gh.pulls.get(w.prOf(first))!.body;
    expect(body).not.toContain(jwt);
    expect(body).toContain('"target": "prod"');
    expect(body).toContain('**1 value(s) above are masked**');
    expect(approvalDocument(a)).toContain('masked_values: 1');
    // A call with nothing masked says nothing of the kind.
    const plain = await w.call(c, 'secret', { target: 'staging' });
    const p = gw.gw.approvals.get((plain as { data: { approval_id: string } }).data.approval_id)!;
    expect(p.call.masked).toBeUndefined();
    expect(w.gh.pulls.get(w.prOf(plain))!.body).not.toContain('masked**');
  });

  it('an own __proto__ key in the arguments never reaches an approval (the message is refused as it is read)', async () => {
    const gw = await w.shared();
    const c = await w.client(gw);
    const first = await w.call(c, 'echo', { message: 'proto' });
    await w.hook(gw, 'pull_request_review', w.gh.review(w.prOf(first), { login: 'sam', state: 'approved' }));
    const polluted = JSON.parse('{"message":"proto","__proto__":{"admin":true}}') as Record<string, unknown>;
    expect(await w.call(c, 'echo', polluted)).toMatchObject({ ok: false, code: 400 });
    expect(await w.call(c, 'echo', { message: 'proto' })).toMatchObject({ ok: true });
  });
});

describe('what reviewers approve is what gitgate wrote', () => {
  type Edit = (pr: number, file: string) => { event: string; payload: Record<string, unknown> };
  const edits: [string, Edit][] = [
    [
      'the description edited to show other arguments',
      (pr) => ({
        event: 'pull_request',
        payload: w.gh.editPull(pr, 'mallory', {
          body: w.gh.pulls.get(pr)!.body.replace(/"message": "[^"]*"/, '"message": "harmless"'),
        }),
      }),
    ],
    [
      'the title edited',
      (pr) => ({ event: 'pull_request', payload: w.gh.editPull(pr, 'mallory', { title: 'chore: typo' }) }),
    ],
    [
      'the base changed',
      (pr) => ({ event: 'pull_request', payload: w.gh.editPull(pr, 'mallory', { base: 'release' }) }),
    ],
    [
      'the approval file changed by a push',
      (pr, file) => ({
        event: 'pull_request',
        payload: w.gh.push(pr, {
          [file]: w.gh.fileAtHead(pr, file)!.replace(/arguments: .*/, 'arguments: {"message":"harmless"}'),
        }),
      }),
    ],
    [
      'another file added by a push',
      (pr) => ({
        event: 'pull_request',
        payload: w.gh.push(pr, { 'NOTE.md': 'This call is harmless, approve it.\n' }),
      }),
    ],
  ];
  for (const [what, edit] of edits) {
    it(`a pull request with ${what} is denied, and an approval of it releases nothing`, async () => {
      const gw = await w.shared();
      const c = await w.client(gw);
      const message = `edited: ${what}`;
      const first = await w.call(c, 'echo', { message });
      const pr = w.prOf(first);
      const { event, payload } = edit(pr, `approvals/${first.ok ? '' : first.data.approval_id}.yaml`);
      await w.hook(gw, event, payload);
      await w.hook(gw, 'pull_request_review', w.gh.review(pr, { login: 'sam', state: 'approved' }));
      const out = await w.call(c, 'echo', { message });
      expect(out).toMatchObject({ ok: false, code: -32019, data: { status: 'denied' } });
      expect((out as { message: string }).message).toContain('the request was changed after gitgate opened it');
      expect(w.calls('echo', message)).toBe(0);
    });
  }

  it('a push that changes nothing reviewers see only makes earlier approvals stale; an approval of the new head releases', async () => {
    const gw = await w.shared();
    const c = await w.client(gw);
    const pr = w.prOf(await w.call(c, 'add', { a: 5, b: 5 }));
    await w.hook(gw, 'pull_request_review', w.gh.review(pr, { login: 'sam', state: 'approved' }));
    await w.hook(gw, 'pull_request', w.gh.push(pr));
    await w.hook(gw, 'pull_request_review', w.gh.review(pr, { login: 'sue', state: 'approved' }));
    expect(await w.call(c, 'add', { a: 5, b: 5 })).toMatchObject({
      ok: false,
      code: -32011,
      data: { status: 'pending' },
    });
    await w.hook(gw, 'pull_request_review', w.gh.review(pr, { login: 'sam', state: 'approved' }));
    expect(await w.call(c, 'add', { a: 5, b: 5 })).toEqual({ ok: true, content: [{ type: 'text', text: '10' }] });
  });
});

describe('a call held for approval goes only on the terms of now', () => {
  /** A call held (holdSeconds), its pull request, and how it ends once a review arrives. */
  const holdEcho = async (gw: TestGateway, message: string, token?: { githubLogin: string; ttlSeconds: number }) => {
    const c = await w.client(gw, 'alice', token);
    const progress: string[] = [];
    const held = c.client
      .callTool({ name: 'echo', arguments: { message } }, undefined, {
        onprogress: (p) => progress.push(p.message ?? ''),
        timeout: 60_000,
      })
      .then(
        () => 'released',
        (e: McpError) => `${e.code} ${e.message}`,
      );
    await expect.poll(() => progress.length, { timeout: 10_000 }).toBeGreaterThan(0);
    return { held, pr: Number(/\/pull\/(\d+)/.exec(progress[0]!)![1]) };
  };
  const swapTo = async (gw: TestGateway, dir: string) =>
    gw.gw.policy.swap(await loadPolicyFromDir({ opa: await opa(), dir, workDir: gw.dataDir }));

  it('the policy swapped while it waited asks two approvals now: one approval releases nothing', async () => {
    const gw = await w.start({ holdSeconds: 60 });
    const { held, pr } = await holdEcho(gw, 'held-across-swap');
    await swapTo(
      gw,
      await GitHubApprovalWorld.policy({ ...HIGH_RISK, echo: { ...HIGH_RISK.echo!, min_approvals: 2 } }),
    );
    await w.hook(gw, 'pull_request_review', w.gh.review(pr, { login: 'sam', state: 'approved' }));
    expect(await held).toMatch(/^-32010 .*the policy changed while the call was held for approval/);
    expect(w.calls('echo', 'held-across-swap')).toBe(0);
  });

  it('the policy swapped while it waited denies the call now: the approval releases nothing', async () => {
    const gw = await w.start({ holdSeconds: 60 });
    const { held, pr } = await holdEcho(gw, 'held-across-deny');
    // Nobody may call the upstream now.
    const none = {
      full_access_groups: [],
      public_tools: [],
      high_risk_tools: {},
      mask: [],
      credential_ttl_seconds: 60,
    };
    await swapTo(gw, await makePolicyDir({ ...TEST_POLICY_DATA, upstreams: { gh: none } }));
    await w.hook(gw, 'pull_request_review', w.gh.review(pr, { login: 'sam', state: 'approved' }));
    const ended = await held;
    expect(ended).toMatch(/^-32010 MCP error -32010: Denied by policy: /);
    expect(ended).not.toMatch(/the policy changed/);
    expect(w.calls('echo', 'held-across-deny')).toBe(0);
  });

  it("the caller's token expired while it waited: not released", async () => {
    const gw = await w.start({ holdSeconds: 600 }, { clock: 'all' });
    const { held, pr } = await holdEcho(gw, 'held-past-exp', { githubLogin: 'alice-gh', ttlSeconds: 30 });
    w.clock.advance(60_000);
    await w.hook(gw, 'pull_request_review', w.gh.review(pr, { login: 'sam', state: 'approved' }));
    expect(await held).toMatch(/^-32001 .*token expired while the call was held for approval/);
    expect(w.calls('echo', 'held-past-exp')).toBe(0);
  });
});

describe('once, and only in time', () => {
  const TTL_MS = HIGH_RISK.echo.ttl_seconds * 1000;

  it('an approval that arrives after the TTL releases nothing; the retry asks anew', async () => {
    const gw = await w.start();
    const c = await w.client(gw);
    const pr = w.prOf(await w.call(c, 'echo', { message: 'too-late' }));
    w.clock.advance(TTL_MS + 1);
    await w.hook(gw, 'pull_request_review', w.gh.review(pr, { login: 'sam', state: 'approved' }));
    expect(w.approvalOf(gw, pr).status).toBe('expired');
    const out = await w.call(c, 'echo', { message: 'too-late' });
    expect(out).toMatchObject({ ok: false, code: -32011, data: { status: 'pending' } });
    expect(w.prOf(out)).not.toBe(pr);
    expect(w.calls('echo', 'too-late')).toBe(0);
  });

  it('approved in time, retried after the TTL: expired, not executed', async () => {
    const gw = await w.start();
    const c = await w.client(gw);
    const pr = w.prOf(await w.call(c, 'echo', { message: 'retry-late' }));
    await w.hook(gw, 'pull_request_review', w.gh.review(pr, { login: 'sam', state: 'approved' }));
    expect(w.approvalOf(gw, pr).status).toBe('approved');
    w.clock.advance(TTL_MS + 1);
    expect(await w.call(c, 'echo', { message: 'retry-late' })).toMatchObject({ ok: false, code: -32011 });
    expect(w.approvalOf(gw, pr).status).toBe('expired');
    expect(w.calls('echo', 'retry-late')).toBe(0);
  });

  it('a TTL that runs out while the release reads GitHub releases nothing', async () => {
    const gw = await w.start();
    const c = await w.client(gw);
    const pr = w.prOf(await w.call(c, 'echo', { message: 'expires-mid-read' }));
    await w.hook(gw, 'pull_request_review', w.gh.review(pr, { login: 'sam', state: 'approved' }));
    w.gh.onRequest = (op) => {
      if (op === 'pulls/list-reviews') w.clock.advance(TTL_MS + 1);
    };
    try {
      expect(await w.call(c, 'echo', { message: 'expires-mid-read' })).toMatchObject({
        ok: false,
        code: -32019,
        data: { status: 'expired' },
      });
    } finally {
      w.gh.onRequest = undefined;
    }
    expect(w.calls('echo', 'expires-mid-read')).toBe(0);
  });

  it('identical retries racing for one approval run the call once', async () => {
    const gw = await w.shared();
    const c = await w.client(gw);
    const pr = w.prOf(await w.call(c, 'echo', { message: 'race-once' }));
    await w.hook(gw, 'pull_request_review', w.gh.review(pr, { login: 'sam', state: 'approved' }));
    const outs = await Promise.all(Array.from({ length: 5 }, () => w.call(c, 'echo', { message: 'race-once' })));
    expect(outs.filter((o) => o.ok)).toHaveLength(1);
    expect(outs.filter((o) => !o.ok && o.code === -32011)).toHaveLength(4);
    expect(w.calls('echo', 'race-once')).toBe(1);
  });

  it('an executed approval stays executed: later reviews, a merge, a restart and polls release nothing more', async () => {
    const gw = await w.start();
    const c = await w.client(gw);
    const pr = w.prOf(await w.call(c, 'echo', { message: 'used' }));
    await w.hook(gw, 'pull_request_review', w.gh.review(pr, { login: 'sam', state: 'approved' }));
    expect(await w.call(c, 'echo', { message: 'used' })).toMatchObject({ ok: true });
    // gitgate closes the PR when it finishes; someone reopens it and approves and merges it again.
    await expect.poll(() => w.gh.pulls.get(pr)!.state).toBe('closed');
    await w.hook(gw, 'pull_request', w.gh.reopen(pr, 'sue'));
    await w.hook(gw, 'pull_request_review', w.gh.review(pr, { login: 'sue', state: 'approved' }));
    await w.hook(gw, 'pull_request', w.gh.closePull(pr, 'sue', true));
    await gw.gw.approvals.poll();
    expect(w.approvalOf(gw, pr).status).toBe('executed');
    const again = await w.call(c, 'echo', { message: 'used' });
    expect(again).toMatchObject({ ok: false, code: -32011, data: { status: 'pending' } });
    expect(w.prOf(again)).not.toBe(pr);
    expect(await w.after()).toEqual([]);
    const restarted = await w.start({}, { dataDir: gw.dataDir });
    await restarted.gw.approvals.poll();
    expect(w.approvalOf(restarted, pr).status).toBe('executed');
    expect(await w.call(await w.client(restarted), 'echo', { message: 'used' })).toMatchObject({
      ok: false,
      code: -32011,
    });
    expect(w.calls('echo', 'used')).toBe(1);
  });

  it('closed, then reopened and approved: still denied; the retry is refused until the TTL ends, then asks anew', async () => {
    const gw = await w.start();
    const c = await w.client(gw);
    const pr = w.prOf(await w.call(c, 'echo', { message: 'reopened' }));
    await w.hook(gw, 'pull_request', w.gh.closePull(pr, 'sue', false));
    expect(w.approvalOf(gw, pr)).toMatchObject({ status: 'denied', denial: { by: 'sue' } });
    await w.hook(gw, 'pull_request', w.gh.reopen(pr, 'mallory'));
    await w.hook(gw, 'pull_request_review', w.gh.review(pr, { login: 'sam', state: 'approved' }));
    await gw.gw.approvals.poll();
    expect(await w.call(c, 'echo', { message: 'reopened' })).toMatchObject({
      ok: false,
      code: -32019,
      data: { status: 'denied' },
    });
    w.clock.advance(TTL_MS + 1);
    const anew = await w.call(c, 'echo', { message: 'reopened' });
    expect(anew).toMatchObject({ ok: false, code: -32011, data: { status: 'pending' } });
    expect(w.prOf(anew)).not.toBe(pr);
    expect(w.calls('echo', 'reopened')).toBe(0);
  });
});

describe('what reviewers read cannot be reshaped by the call', () => {
  const record = (tool: string, uri?: string): ApprovalRecord => ({
    id: 'abc-1',
    callHash: 'h',
    generation: 1,
    status: 'pending',
    createdAt: '2030-01-01T00:00:00.000Z',
    expiresAt: '2030-01-01T00:15:00.000Z',
    requester: { sub: 'alice', login: 'alice-gh', githubLogin: 'alice-gh' },
    call: {
      upstream: 'gh',
      method: 'tools/call',
      tool,
      ...(uri !== undefined ? { uri } : {}),
      arguments: { path: '/etc/shadow' },
    },
    approvers: ['@acme/security'],
    minApprovals: 1,
    required: 1,
    reasons: ['high risk'],
    risk: 'high',
    policy: { revision: null, bundleDigest: 'd'.repeat(64) },
    approvals: [],
  });

  it('a tool name with backticks stays inside its code span: it cannot hide the arguments or add text', () => {
    const tool = 'rm` **pre-approved by security** <!--';
    const body = approvalBody(record(tool));
    const first = body.split('\n')[0]!;
    expect(first).toContain(inlineCode(`tools/call ${tool}`));
    expect(first).toMatch(
      /^\*\*alice-gh\*\* \(`alice`\) asks to run `` tools\/call rm` \*\*pre-approved by security\*\* <!-- `` on upstream `gh`\.$/,
    );
    expect(body).toContain('"path": "/etc/shadow"');
  });

  it('a tool name or uri with a newline cannot add a line to the approval file; control characters are shown escaped', () => {
    const doc = approvalDocument(record('echo\narguments: {"path":"/tmp/harmless"}', 'file:///x\r\nrisk: low'));
    expect(doc.split('\n').filter((l) => l.startsWith('arguments:'))).toEqual(['arguments: {"path":"/etc/shadow"}']);
    expect(doc.split('\n').filter((l) => l.startsWith('risk:'))).toEqual(['risk: "high"']);
    expect(approvalTitle(record('echo\u001b[2K\rsafe'))).toBe(
      'gitgate approval: alice-gh → gh tools/call echo\\u001b[2K\\u000dsafe',
    );
    expect(inlineCode('a\u202eb')).toBe('`a\\u202eb`');
  });
});

/**
 * A session-era HTTP upstream whose first tools/call runs (it is recorded), then loses its
 * connection before any byte of the answer: a server timeout, a proxy, a worker that died.
 */
async function upstreamThatDropsAfterRunning() {
  const calls: { tool: string; message?: string }[] = [];
  let dropped = false;
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      if (req.method !== 'POST') return void res.writeHead(405).end();
      const m = JSON.parse(body) as {
        id?: number;
        method: string;
        params?: { protocolVersion?: string; name?: string; arguments?: { message?: string } };
      };
      const reply = (result: unknown): void =>
        void res
          .writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': 'up-1' })
          .end(JSON.stringify({ jsonrpc: '2.0', id: m.id, result }));
      if (m.id === undefined) return void res.writeHead(202).end();
      if (m.method === 'initialize')
        return reply({
          protocolVersion: m.params?.protocolVersion,
          capabilities: { tools: {} },
          serverInfo: { name: 'r', version: '1' },
        });
      if (m.method !== 'tools/call') return reply({});
      const message = m.params?.arguments?.message;
      calls.push({ tool: m.params?.name ?? '', ...(message !== undefined ? { message } : {}) });
      if (dropped) return reply({ content: [{ type: 'text', text: `echo: ${message}` }] });
      dropped = true;
      req.socket.destroy();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`,
    calls,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

describe('an approved call reaches the upstream at most once', () => {
  const w2 = new GitHubApprovalWorld();
  beforeAll(async () => {
    await w2.setup();
    await w2.upstream.close();
    w2.upstream = await upstreamThatDropsAfterRunning();
  });
  afterEach(async () => expect(await w2.after()).toEqual([]));
  afterAll(() => w2.teardown());

  it('a connection lost after the upstream ran the call is not a reason to send it again', async () => {
    const gw = await w2.start();
    const c = await w2.client(gw);
    const first = await w2.call(c, 'echo', { message: 'transfer-100' });
    await w2.hook(gw, 'pull_request_review', w2.gh.review(w2.prOf(first), { login: 'sam', state: 'approved' }));
    // The approval is claimed and the call forwarded once; its answer is lost with the connection.
    expect(await w2.call(c, 'echo', { message: 'transfer-100' })).toMatchObject({ ok: false, code: 502 });
    expect(w2.calls('echo', 'transfer-100')).toBe(1);
  });
});
