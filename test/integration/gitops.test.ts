import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import type { McpError } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { VERSION } from '../../src/version.js';
import { signBody } from '../../src/webhooks/verify-and-receive.js';
// @ts-expect-error plain JS fixture
import { startHttpServer } from '../fixtures/demo-server.mjs';
// The CLI commands run in this process: these tests are about what they do, not the process.
import { gitgateInProcess as gitgate } from '../helpers/cli.js';
import { connectClient } from '../helpers/client.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { TEST_POLICY_DATA } from '../helpers/policy.js';
import { PolicyRepo } from '../helpers/policy-repo.js';
import { soakSize } from '../helpers/soak.js';

const SECRET = 'gitops-webhook-secret';
process.env.GITGATE_TEST_GITOPS_SECRET = SECRET;

const withoutEcho = () => {
  const d = structuredClone(TEST_POLICY_DATA) as { upstreams: Record<string, { public_tools: string[] }> };
  d.upstreams.http!.public_tools = d.upstreams.http!.public_tools.filter((t) => t !== 'echo');
  return d;
};

interface Ready {
  policy: { revision: string | null; bundle_digest: string };
  last_policy_error: string | null;
  policy_sync: { commit?: string; lastError?: { commit?: string; message: string } } | null;
}

describe('GitOps: policies pulled from a git repo, verified, and swapped in without a restart', () => {
  let upstream: { url: string; close(): Promise<void> };
  const gateways: TestGateway[] = [];
  beforeAll(async () => {
    upstream = await startHttpServer();
  });
  // Each gateway polls its repo: stop it as soon as its test is done.
  afterEach(async () => {
    for (const g of gateways.splice(0)) await g.close().catch(() => undefined);
  });
  afterAll(async () => {
    await upstream.close();
  });

  const start = async (repo: PolicyRepo, extra: Record<string, unknown> = {}) => {
    const gw = await startGateway({
      upstreams: { http: { url: upstream.url } },
      policyRepo: { url: repo.dir, pollSeconds: 0.2, ...extra },
      approvals: { webhookSecret: { fromEnv: 'GITGATE_TEST_GITOPS_SECRET' } },
    });
    gateways.push(gw);
    return gw;
  };
  const ready = async (gw: TestGateway) => (await (await fetch(`${gw.url}/readyz`)).json()) as Ready;
  const echo = async (c: Awaited<ReturnType<typeof connectClient>>) => {
    try {
      await c.client.callTool({ name: 'echo', arguments: { message: 'x' } });
      return 'allowed';
    } catch (e) {
      return `denied ${(e as McpError).code} ${JSON.stringify((e as McpError).data)}`;
    }
  };

  it('a merged change is enforced within seconds, with its commit in /readyz and in decisions', async () => {
    const repo = await PolicyRepo.create();
    const gw = await start(repo);
    const c = await connectClient(`${gw.url}/mcp/http`, await gw.token('bob'));
    const first = (await ready(gw)).policy.revision;
    expect(first).toMatch(/^[0-9a-f]{40}$/);
    expect(await echo(c)).toBe('allowed');
    const sha = await repo
      .write('policies/config/data.json', JSON.stringify(withoutEcho()))
      .commit('policy: echo is no longer public');
    await expect.poll(async () => (await ready(gw)).policy.revision, { timeout: 10_000 }).toBe(sha);
    const denied = await echo(c);
    expect(denied).toContain('-32010');
    expect(denied).toContain(`"policy_revision":"${sha}"`);
    const status = await gitgate(['policy', 'status', '--url', gw.url]);
    expect(status.stdout).toContain(`policy revision: ${sha}`);
    await c.close();
  });

  it.each([
    [
      'a Rego syntax error',
      (r: PolicyRepo) => r.write('policies/gitgate/broken.rego', 'package gitgate\n\nthis is not rego\n'),
      /rego_parse_error|parse/,
    ],
    [
      'a policy whose smoke decision is invalid',
      (r: PolicyRepo) => r.write('policies/gitgate/decision.rego', 'package gitgate\n\ndecision := {"allow": true}\n'),
      /smoke decision failed/,
    ],
    [
      'a builtin the runtime lacks',
      (r: PolicyRepo) =>
        r.write(
          'policies/gitgate/extra.rego',
          'package gitgate\n\nx := http.send({"method": "GET", "url": "http://127.0.0.1:1"})\n',
        ),
      /http\.send/,
    ],
  ])('%s leaves the previous policy serving and is reported', async (_name, breakIt, why) => {
    const repo = await PolicyRepo.create();
    const gw = await start(repo);
    const good = (await ready(gw)).policy.revision;
    const bad = await breakIt(repo).commit('a bad change');
    await expect.poll(async () => (await ready(gw)).policy_sync?.lastError?.commit, { timeout: 15_000 }).toBe(bad);
    const r = await ready(gw);
    expect(r.policy.revision).toBe(good);
    expect(r.last_policy_error).toMatch(why);
    const c = await connectClient(`${gw.url}/mcp/http`, await gw.token('bob'));
    expect(await echo(c)).toBe('allowed');
    await c.close();
  });

  describe('signed bundles (built and signed by the real opa via gitgate policy build --sign-key)', () => {
    let keys: { dir: string; priv: string; pub: string; otherPriv: string };
    beforeAll(() => {
      const dir = mkdtempSync(path.join(tmpdir(), 'gitgate-signing-'));
      const pair = generateKeyPairSync('rsa', { modulusLength: 2048 });
      const other = generateKeyPairSync('rsa', { modulusLength: 2048 });
      keys = {
        dir,
        priv: path.join(dir, 'key.pem'),
        pub: path.join(dir, 'pub.pem'),
        otherPriv: path.join(dir, 'other.pem'),
      };
      writeFileSync(keys.priv, pair.privateKey.export({ format: 'pem', type: 'pkcs8' }));
      writeFileSync(keys.pub, pair.publicKey.export({ format: 'pem', type: 'spki' }));
      writeFileSync(keys.otherPriv, other.privateKey.export({ format: 'pem', type: 'pkcs8' }));
    });
    const build = async (repo: PolicyRepo, key = keys.priv) => {
      const r = await gitgate(['policy', 'build', '--dir', path.join(repo.dir, 'policies'), '--sign-key', key]);
      expect(r.code, r.stderr).toBe(0);
    };
    const verified = (repo: PolicyRepo) =>
      start(repo, { compile: false, verification: { publicKey: { fromFile: keys.pub }, algorithm: 'RS256' } });

    it('a signed bundle is verified and loaded; tampering, a foreign key, a stale bundle and a missing bundle are refused', async () => {
      const repo = await PolicyRepo.create();
      await build(repo);
      await repo.commit('build: signed bundle');
      const gw = await verified(repo);
      const good = (await ready(gw)).policy.revision;
      expect(good).toMatch(/^[0-9a-f]{40}$/);

      const expectRefused = async (sha: string, why: RegExp) => {
        await expect.poll(async () => (await ready(gw)).policy_sync?.lastError?.commit, { timeout: 15_000 }).toBe(sha);
        const r = await ready(gw);
        expect(r.policy.revision).toBe(good);
        expect(r.last_policy_error).toMatch(why);
      };

      // A file in the signed bundle changed after signing (data.json: echo no longer public).
      const bundlePath = path.join(repo.dir, 'policies', 'bundle.tar.gz');
      const original = readFileSync(bundlePath);
      const tar = gunzipSync(original);
      const marker = Buffer.from('"echo"');
      const at = tar.indexOf(marker);
      expect(at).toBeGreaterThan(0);
      Buffer.from('"ecHo"').copy(tar, at);
      writeFileSync(bundlePath, gzipSync(tar));
      await expectRefused(
        await repo.commit('tampered bundle'),
        /data\.json does not match its signed hash \(tampered\)/,
      );

      // Signed with another key.
      writeFileSync(bundlePath, original);
      await build(repo, keys.otherPriv);
      await expectRefused(
        await repo.commit('bundle signed with a foreign key'),
        /signature does not verify with the configured key/,
      );

      // Sources changed but the bundle was not rebuilt: stale.
      await build(repo);
      repo.write('policies/config/data.json', JSON.stringify(withoutEcho()));
      await expectRefused(await repo.commit('sources changed, bundle stale'), /stale bundle/);

      // No bundle at all while verification is on: never compiled, never served.
      execFileSync('git', ['rm', '-q', 'policies/bundle.tar.gz'], { cwd: repo.dir });
      await expectRefused(
        await repo.commit('bundle removed'),
        /carries no signed bundle, and verification is configured/,
      );

      // A correctly signed rebuild is accepted.
      await build(repo);
      const next = await repo.commit('build: signed bundle');
      await expect.poll(async () => (await ready(gw)).policy.revision, { timeout: 15_000 }).toBe(next);
    });
  });

  it('webhooks: a verified push syncs at once; a bad signature or a replayed delivery changes nothing', async () => {
    const repo = await PolicyRepo.create();
    const gw = await start(repo, { pollSeconds: 3600 });
    const first = (await ready(gw)).policy.revision;
    const push = (delivery: string, sig?: string) => {
      const body = JSON.stringify({ ref: 'refs/heads/main', after: 'x', repository: { full_name: 'acme/policies' } });
      return fetch(`${gw.url}/webhooks/github`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'x-github-event': 'push',
          'x-github-delivery': delivery,
          'x-hub-signature-256': sig ?? signBody(SECRET, body),
        },
        body,
      });
    };
    // The push handler starts a sync before the delivery is answered: a refused delivery started none.
    const syncs = vi.spyOn(gw.gw.sync!, 'sync');
    const second = await repo.write('policies/config/data.json', JSON.stringify(withoutEcho())).commit('change 1');
    expect((await push('d-1', 'sha256=deadbeef')).status).toBe(401);
    expect(syncs).not.toHaveBeenCalled();
    expect((await ready(gw)).policy.revision).toBe(first);
    expect((await push('d-2')).status).toBe(202);
    expect(syncs).toHaveBeenCalledTimes(1);
    await expect.poll(async () => (await ready(gw)).policy.revision, { timeout: 10_000 }).toBe(second);
    const third = await repo.write('policies/config/data.json', JSON.stringify(TEST_POLICY_DATA)).commit('change 2');
    const replay = await push('d-2');
    expect(replay.status).toBe(200);
    expect(await replay.json()).toMatchObject({ duplicate: true });
    expect(syncs).toHaveBeenCalledTimes(1);
    expect((await ready(gw)).policy.revision).toBe(second);
    expect((await push('d-3')).status).toBe(202);
    expect(syncs).toHaveBeenCalledTimes(2);
    await expect.poll(async () => (await ready(gw)).policy.revision, { timeout: 10_000 }).toBe(third);
  });

  it('requests in flight during a swap complete', async () => {
    const repo = await PolicyRepo.create();
    const gw = await start(repo);
    const c = await connectClient(`${gw.url}/mcp/http`, await gw.token('bob'));
    const slow = c.client.callTool({ name: 'slow', arguments: { steps: 60 } });
    const sha = await repo
      .write('policies/config/data.json', JSON.stringify(withoutEcho()))
      .commit('swap during a call');
    await expect.poll(async () => (await ready(gw)).policy.revision, { timeout: 10_000 }).toBe(sha);
    expect((await slow).content).toEqual([{ type: 'text', text: 'done after 60 steps' }]);
    await c.close();
  });

  const COMMITS = soakSize(15, 100);
  it(`${COMMITS} rapid commits end on the newest, and no request meets a half-loaded policy`, async () => {
    const repo = await PolicyRepo.create();
    const versioned = (i: number) => {
      repo.write(
        'policies/gitgate/decision.rego',
        `package gitgate\n\nrego_version := ${i}\n\ndecision := {"allow": false, "reasons": [sprintf("rego=%d data=%d", [rego_version, data.config.version])]}\n`,
      );
      repo.write('policies/config/data.json', JSON.stringify({ version: i }));
      return repo.commit(`version ${i}`);
    };
    await versioned(0);
    const gw = await start(repo, { pollSeconds: 0.1 });
    const seen: string[] = [];
    let stop = false;
    const token = await gw.token('bob');
    const probe = (async () => {
      while (!stop) {
        const res = await fetch(`${gw.url}/mcp/http`, {
          method: 'POST',
          headers: {
            authorization: `Bearer ${token}`,
            'content-type': 'application/json',
            accept: 'application/json, text/event-stream',
          },
          body: JSON.stringify({
            jsonrpc: '2.0',
            id: 1,
            method: 'initialize',
            params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'p', version: '1' } },
          }),
        });
        const body = (await res.json()) as { error?: { data?: { reasons?: string[] } } };
        seen.push(body.error?.data?.reasons?.[0] ?? 'none');
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    let last = '';
    for (let i = 1; i <= COMMITS; i++) last = await versioned(i);
    await expect.poll(async () => (await ready(gw)).policy.revision, { timeout: 90_000 }).toBe(last);
    // Until the probe has met the newest policy, and has sampled at least 20 decisions in all.
    await expect
      .poll(() => seen.length > 20 && seen.at(-1) === `rego=${COMMITS} data=${COMMITS}`, { timeout: 30_000 })
      .toBe(true);
    stop = true;
    await probe;
    expect(seen.length).toBeGreaterThan(20);
    for (const reason of seen) {
      const m = /^rego=(\d+) data=(\d+)$/.exec(reason);
      expect(m, reason).not.toBeNull();
      expect(m![1]).toBe(m![2]);
    }
    expect(seen.at(-1)).toBe(`rego=${COMMITS} data=${COMMITS}`);
    // Alone this takes seconds; the budget covers a loaded 2-core CI machine.
  }, 240_000);

  it('routes in the policy repo swap together with the policy', async () => {
    const repo = await PolicyRepo.create();
    const gw = await start(repo);
    const token = await gw.token('bob');
    const init = (name: string) =>
      fetch(`${gw.url}/mcp/${name}`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${token}`,
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
        },
        body: JSON.stringify({
          jsonrpc: '2.0',
          id: 1,
          method: 'initialize',
          params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'r', version: '1' } },
        }),
      });
    expect((await init('stdio')).status).toBe(404);
    const sha = await repo
      .write('gitgate.routes.yaml', `upstreams:\n  stdio:\n    url: ${upstream.url}\n`)
      .commit('route: add an upstream by PR');
    await expect.poll(async () => (await ready(gw)).policy.revision, { timeout: 10_000 }).toBe(sha);
    expect((await init('stdio')).status).toBe(200);
    const bad = await repo
      .write('gitgate.routes.yaml', 'upstreams:\n  Bad Name: {url: "ftp://x"}\n')
      .commit('a broken route');
    await expect.poll(async () => (await ready(gw)).policy_sync?.lastError?.commit, { timeout: 10_000 }).toBe(bad);
    expect((await ready(gw)).last_policy_error).toMatch(/gitgate\.routes\.yaml/);
    expect((await init('stdio')).status).toBe(200);
  });

  it('gitgate init policy-repo scaffolds a repo that passes its own policy checks', async () => {
    const dir = path.join(mkdtempSync(path.join(tmpdir(), 'gitgate-init-')), 'policy-repo');
    const init = await gitgate(['init', 'policy-repo', dir]);
    expect(init.code, init.stderr).toBe(0);
    const test = await gitgate(['policy', 'test', '--dir', path.join(dir, 'policies')]);
    expect(test.code, test.stdout).toBe(0);
    const build = await gitgate([
      'policy',
      'build',
      '--dir',
      path.join(dir, 'policies'),
      '--out',
      path.join(dir, 'out'),
    ]);
    expect(build.code, build.stderr).toBe(0);
    // The workflow uses this version's gitgate action (test/integration/pack-install.test.ts runs it).
    const workflow = readFileSync(path.join(dir, '.github', 'workflows', 'policy.yml'), 'utf8');
    expect(workflow).toContain(`uses: gitgate/gitgate@v${VERSION}`);
    expect(workflow).not.toContain('npm install');
    expect(readFileSync(path.join(dir, 'CODEOWNERS'), 'utf8')).toContain('/policies/');
  });
});
