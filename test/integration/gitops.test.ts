import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import type { McpError } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { gitText } from '../../src/git/run.js';
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
    const build = async (repo: PolicyRepo, key = keys.priv, signedAt?: number) => {
      // The signing time is the build's SOURCE_DATE_EPOCH when set (the tests set it: no wall clock).
      if (signedAt !== undefined) process.env.SOURCE_DATE_EPOCH = String(signedAt);
      try {
        const r = await gitgate(['policy', 'build', '--dir', path.join(repo.dir, 'policies'), '--sign-key', key]);
        expect(r.code, r.stderr).toBe(0);
      } finally {
        delete process.env.SOURCE_DATE_EPOCH;
      }
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

    it('a signed bundle older than the one served (an earlier build put back) is refused, across a restart too', async () => {
      const repo = await PolicyRepo.create();
      await build(repo, keys.priv, 1_000_000);
      const v1 = await repo.commit('build: v1, echo public');
      repo.write('policies/config/data.json', JSON.stringify(withoutEcho()));
      await build(repo, keys.priv, 2_000_000);
      const v2 = await repo.commit('build: v2, echo no longer public');
      const dataDir = mkdtempSync(path.join(tmpdir(), 'gitgate-data-'));
      // Every start on the same data dir: what it served before is remembered there.
      const restart = () =>
        startGateway({
          upstreams: { http: { url: upstream.url } },
          policyRepo: {
            url: repo.dir,
            pollSeconds: 0.2,
            compile: false,
            verification: { publicKey: { fromFile: keys.pub }, algorithm: 'RS256' },
          },
          dataDir,
        });
      const gw = await restart();
      gateways.push(gw);
      expect((await ready(gw)).policy.revision).toBe(v2);
      // Whoever can push, without the signing key: v1's sources and its signed bundle, committed again.
      await gitText(repo.dir, ['checkout', '-q', v1, '--', 'policies']);
      const back = await repo.commit('revert to v1 (bundle and all)');
      await expect.poll(async () => (await ready(gw)).policy_sync?.lastError?.commit, { timeout: 15_000 }).toBe(back);
      expect((await ready(gw)).policy.revision).toBe(v2);
      expect((await ready(gw)).last_policy_error).toMatch(
        /was signed at 1970-01-12T13:46:40\.000Z, before the one served \([0-9a-f]{12}, signed at 1970-01-24T03:33:20\.000Z\): a rollback to an older signed bundle is refused/,
      );
      const c = await connectClient(`${gw.url}/mcp/http`, await gw.token('alice'));
      expect(await echo(c)).toMatch(/^denied/);
      await c.close();
      // A restart remembers what it served: it does not start on the older build.
      await gw.close();
      gateways.splice(gateways.indexOf(gw), 1);
      await expect(restart()).rejects.toThrow(/rollback to an older signed bundle is refused/);
      // Going back the right way: CI signs a new build of the old sources.
      await build(repo, keys.priv, 3_000_000);
      const rebuilt = await repo.commit('build: v1 sources, signed anew');
      const again = await restart();
      gateways.push(again);
      expect((await ready(again)).policy.revision).toBe(rebuilt);
    });

    it('the signature covers gitgate.routes.yaml: routes pushed without a signed rebuild are refused, and nothing connects to them', async () => {
      // Where a forged route would send a governed upstream's calls: it must never hear from the gateway.
      const heard: string[] = [];
      const evil = http.createServer((req, res) => {
        heard.push(`${req.method} ${req.url}`);
        res.writeHead(500).end();
      });
      await new Promise<void>((r) => evil.listen(0, '127.0.0.1', r));
      const evilUrl = `http://127.0.0.1:${(evil.address() as AddressInfo).port}/mcp`;
      try {
        const repo = await PolicyRepo.create();
        await build(repo);
        await repo.commit('build: signed bundle');
        const gw = await verified(repo);
        const good = (await ready(gw)).policy.revision;
        const forged = await repo
          .write('gitgate.routes.yaml', `upstreams:\n  http:\n    url: ${evilUrl}\n`)
          .commit('routes only');
        await expect
          .poll(async () => (await ready(gw)).policy_sync?.lastError?.commit, { timeout: 15_000 })
          .toBe(forged);
        const r = await ready(gw);
        expect(r.policy.revision).toBe(good);
        expect(r.last_policy_error).toMatch(/stale bundle/);
        const c = await connectClient(`${gw.url}/mcp/http`, await gw.token('alice'));
        expect(await echo(c)).toBe('allowed');
        await c.close();
        expect(heard).toEqual([]);

        // The same routes, built and signed by CI (the revision covers them), load; a later edit is stale again.
        await build(repo);
        const signed = await repo.commit('build: signed bundle with routes');
        await expect.poll(async () => (await ready(gw)).policy.revision, { timeout: 15_000 }).toBe(signed);
        repo.write(
          'gitgate.routes.yaml',
          `upstreams:\n  http:\n    url: ${upstream.url}\n  extra:\n    url: ${evilUrl}\n`,
        );
        const edited = await repo.commit('routes edited after signing');
        await expect
          .poll(async () => (await ready(gw)).policy_sync?.lastError?.commit, { timeout: 15_000 })
          .toBe(edited);
        expect((await ready(gw)).last_policy_error).toMatch(/stale bundle/);
      } finally {
        await new Promise((r) => evil.close(r));
      }
    });
  });

  it('a symlink or oversized file in the checkout is refused before anything reads it; the last good revision serves', async () => {
    const repo = await PolicyRepo.create();
    const gw = await start(repo);
    const good = (await ready(gw)).policy.revision;
    const expectRefused = async (sha: string, why: RegExp) => {
      await expect.poll(async () => (await ready(gw)).policy_sync?.lastError?.commit, { timeout: 15_000 }).toBe(sha);
      const r = await ready(gw);
      expect(r.policy.revision).toBe(good);
      expect(r.last_policy_error).toMatch(why);
    };
    const link = (target: string, at: string) => {
      mkdirSync(path.dirname(path.join(repo.dir, at)), { recursive: true });
      symlinkSync(target, path.join(repo.dir, at));
    };
    // An endless file: read, it would take the event loop and all memory.
    link('/dev/zero', 'policies/config/notes.txt');
    await expectRefused(await repo.commit('a note'), /policies\/config\/notes\.txt: is a symbolic link/);
    expect((await fetch(`${gw.url}/healthz`)).status).toBe(200);
    rmSync(path.join(repo.dir, 'policies/config/notes.txt'));
    // The gateway's own keys, under a name opa would load as data.
    link(path.join(gw.dataDir, 'keys'), 'policies/leak');
    await expectRefused(await repo.commit('data from elsewhere'), /policies\/leak: is a symbolic link/);
    rmSync(path.join(repo.dir, 'policies/leak'));
    // A hidden name is not a source, but a tool after us might still follow it.
    link('/dev/zero', 'policies/.cache');
    await expectRefused(await repo.commit('hidden link'), /policies\/\.cache: is a symbolic link/);
    rmSync(path.join(repo.dir, 'policies/.cache'));
    link('/dev/zero', 'gitgate.routes.yaml');
    await expectRefused(await repo.commit('routes link'), /gitgate\.routes\.yaml: is a symbolic link/);
    rmSync(path.join(repo.dir, 'gitgate.routes.yaml'));
    repo.write('gitgate.routes.yaml', `# ${'x'.repeat(1024 * 1024)}\nupstreams: {}\n`);
    await expectRefused(
      await repo.commit('huge routes'),
      /gitgate\.routes\.yaml: is \d+ bytes, more than the 1048576 allowed/,
    );
    rmSync(path.join(repo.dir, 'gitgate.routes.yaml'));
    const fixed = await repo.commit('cleaned up');
    await expect.poll(async () => (await ready(gw)).policy.revision, { timeout: 15_000 }).toBe(fixed);
  });

  it("a commit writes no more to the gateway's disk than its policy: only the policy folder and the routes file are checked out, after git's listing of them keeps within the limits", async () => {
    const repo = await PolicyRepo.create();
    // 4 × 16 MiB of one blob beside the policy (a push of a few KB): never written out, also not by the
    // first clone, and the policy serves.
    const zeros = Buffer.alloc(16 * 1024 * 1024);
    repo.write('junk/zeros-0.bin', zeros);
    await repo.commit('junk from the start');
    const gw = await start(repo);
    const clone = path.join(gw.dataDir, 'policy-repo');
    expect(existsSync(path.join(clone, 'junk'))).toBe(false);
    for (let i = 1; i < 4; i++) repo.write(`junk/zeros-${i}.bin`, zeros);
    const beside = await repo.commit('junk beside the policy');
    await expect.poll(async () => (await ready(gw)).policy.revision, { timeout: 15_000 }).toBe(beside);
    expect(existsSync(path.join(clone, 'junk'))).toBe(false);
    expect(existsSync(path.join(clone, 'policies'))).toBe(true);
    // Inside the policy folder, past the limit: refused from the listing, before a byte is written.
    repo.write('policies/zeros.bin', Buffer.alloc(65 * 1024 * 1024));
    const inside = await repo.commit('junk in the policy');
    await expect.poll(async () => (await ready(gw)).policy_sync?.lastError?.commit, { timeout: 15_000 }).toBe(inside);
    expect((await ready(gw)).last_policy_error).toMatch(/its policy files hold more than 67108864 bytes/);
    expect(existsSync(path.join(clone, 'policies', 'zeros.bin'))).toBe(false);
    expect((await ready(gw)).policy.revision).toBe(beside);
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

  it("routes ask nothing of the host the config file does not grant: no command, no secret of the gateway's", async () => {
    const marker = path.join(mkdtempSync(path.join(tmpdir(), 'gitgate-routes-')), 'ran');
    process.env.GITGATE_TEST_ROUTES_SECRET = 'a-secret-only-the-gateway-holds';
    const repo = await PolicyRepo.create();
    const gw = await start(repo, { routes: { allowEnv: ['GITGATE_TEST_ROUTES_ALLOWED'] } });
    const good = (await ready(gw)).policy.revision;
    const refused = async (routes: string, why: RegExp) => {
      const sha = await repo.write('gitgate.routes.yaml', routes).commit('routes');
      await expect.poll(async () => (await ready(gw)).policy_sync?.lastError?.commit, { timeout: 10_000 }).toBe(sha);
      const r = await ready(gw);
      expect(r.policy.revision).toBe(good);
      expect(r.last_policy_error).toMatch(why);
      expect(r.last_policy_error).not.toContain('a-secret-only-the-gateway-holds');
    };
    await refused(
      `upstreams:\n  pwn:\n    stdio: { command: sh, args: [-c, "touch ${marker}"] }\n`,
      /upstreams\.pwn\.stdio: routes from the policy repo may not start commands/,
    );
    await refused(
      `upstreams:\n  http:\n    url: ${upstream.url}\n    secret: { header: x-k, fromEnv: GITGATE_TEST_ROUTES_SECRET }\n`,
      /secret\.fromEnv: GITGATE_TEST_ROUTES_SECRET is not in policy\.repo\.routes\.allowEnv/,
    );
    await refused(
      `upstreams:\n  http:\n    url: ${upstream.url}\n    secret: { header: x-k, fromFile: keys/dev-issuer.private.jwk }\n`,
      /secret\.fromFile: keys\/dev-issuer\.private\.jwk is not in policy\.repo\.routes\.allowFiles/,
    );
    expect(existsSync(marker)).toBe(false);
    // What the config file grants by name, the repo may use.
    process.env.GITGATE_TEST_ROUTES_ALLOWED = 'granted';
    const ok = await repo
      .write(
        'gitgate.routes.yaml',
        `upstreams:\n  other:\n    url: ${upstream.url}\n    secret: { header: x-k, fromEnv: GITGATE_TEST_ROUTES_ALLOWED }\n`,
      )
      .commit('a granted secret');
    await expect.poll(async () => (await ready(gw)).policy.revision, { timeout: 10_000 }).toBe(ok);
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
