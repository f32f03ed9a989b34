import { type ChildProcess, execFile } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// @ts-expect-error plain JS fixture
import { startHttpServer } from '../fixtures/demo-server.mjs';
import { startBalancer } from '../helpers/balancer.js';
import { gitgate, gitgateInProcess, serveProcess } from '../helpers/cli.js';
import { connectClient } from '../helpers/client.js';
import { SECRET } from '../helpers/github-approvals.js';
import { GitHubEmulator } from '../helpers/github-emulator.js';
import { startOidcIssuer } from '../helpers/oidc-issuer.js';
import { makePolicyDir, TEST_POLICY_DATA } from '../helpers/policy.js';
import { PolicyRepo } from '../helpers/policy-repo.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';

const execFileP = promisify(execFile);

/**
 * Three `gitgate serve` processes (bin/gitgate.js: run `npx tsc -p tsconfig.json` first) on one real
 * PostgreSQL behind the round-robin balancer: the replica holding a parked call is SIGKILLed, the call is
 * approved through another, and the client's retry runs it exactly once. Each replica has its own data dir
 * and audit repo (its own log), pushed to its branch replica/<id> of one shared audit repo (audit.remote);
 * afterwards each verifies, and all of them together through the shared repo.
 */
describe('replicas as processes: SIGKILL of the replica holding a parked call', () => {
  let db: TestPostgres;
  let gh: GitHubEmulator;
  let idp: Awaited<ReturnType<typeof startOidcIssuer>>;
  let upstream: { url: string; calls: { tool: string; message?: string }[]; close(): Promise<void> };
  const procs: { child: ChildProcess; url: string; dataDir: string; config: string }[] = [];
  let env: NodeJS.ProcessEnv;
  /** The shared audit repo (bare): each replica pushes its log to replica/<id>. */
  let shared: string;

  beforeAll(async () => {
    shared = path.join(await mkdtemp(path.join(tmpdir(), 'gitgate-shared-audit-')), 'audit.git');
    await execFileP('git', ['init', '-q', '--bare', shared]);
    db = await startPostgres();
    gh = await new GitHubEmulator().start();
    gh.team('acme', 'security', ['sam']);
    idp = await startOidcIssuer();
    upstream = await startHttpServer();
    env = {
      GITGATE_TEST_PG_URL: db.url,
      GITGATE_TEST_GH_TOKEN: 'ghs_emulatortoken',
      GITGATE_TEST_WEBHOOK_SECRET: SECRET,
    };
  }, 60_000);

  afterAll(async () => {
    for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    await upstream?.close();
    await idp?.close();
    await gh?.close();
    await db?.destroy();
  });

  async function config(replica: string, policyDir: string): Promise<{ file: string; dataDir: string }> {
    const dir = await mkdtemp(path.join(tmpdir(), `gitgate-${replica}-`));
    const dataDir = path.join(dir, 'data');
    const file = path.join(dir, 'gitgate.yaml');
    await writeFile(
      file,
      JSON.stringify({
        server: { host: '127.0.0.1', port: 0 },
        dataDir,
        identity: { mode: 'oidc', issuer: idp.issuer, audience: 'gitgate' },
        policy: { dir: policyDir },
        upstreams: { gh: { url: upstream.url } },
        approvals: {
          provider: 'github',
          holdSeconds: 30,
          pollSeconds: 3600,
          github: { baseUrl: gh.url, owner: 'acme', repo: 'approvals', token: { fromEnv: 'GITGATE_TEST_GH_TOKEN' } },
          webhookSecret: { fromEnv: 'GITGATE_TEST_WEBHOOK_SECRET' },
        },
        store: { postgres: { url: { fromEnv: 'GITGATE_TEST_PG_URL' }, schema: 'procs', replicaId: replica } },
        audit: { remote: shared },
        log: { level: 'warn' },
      }),
    );
    return { file, dataDir };
  }

  const policyData = (highRisk: Record<string, unknown>) => ({
    ...TEST_POLICY_DATA,
    upstreams: {
      gh: {
        full_access_groups: ['eng'],
        public_tools: [],
        high_risk_tools: highRisk,
        mask: [],
        credential_ttl_seconds: 60,
      },
    },
  });
  const ECHO_APPROVAL = { echo: { approvers: ['@acme/security'], min_approvals: 1, ttl_seconds: 900 } };

  it('gitgate store migrate applies the migrations once; serve finds them done', async () => {
    const policyDir = await makePolicyDir(policyData(ECHO_APPROVAL));
    const first = await config('r1', policyDir);
    const m1 = await gitgate(['store', 'migrate', '--config', first.file], { env });
    expect(m1).toMatchObject({ code: 0, stdout: 'schema procs: at version 3 (applied 1, 2, 3)\n' });
    const m2 = await gitgate(['store', 'migrate', '--config', first.file], { env });
    expect(m2).toMatchObject({ code: 0, stdout: 'schema procs: at version 3 (nothing to apply)\n' });
    expect(m2.stderr).not.toContain(db.url);
    for (const id of ['r1', 'r2', 'r3']) {
      const c = id === 'r1' ? first : await config(id, policyDir);
      const p = await serveProcess(['--config', c.file], env);
      procs.push({ child: p.child, url: p.url, dataDir: c.dataDir, config: c.file });
    }
    // Each replica shows its pushes to the shared audit repo.
    const ready = (await (await fetch(`${procs[1]!.url}/readyz`)).json()) as { audit: { push?: unknown } };
    expect(ready.audit.push).toMatchObject({ remote: shared, branch: 'replica/r2', failures: 0 });
    const metrics = await (await fetch(`${procs[1]!.url}/metrics`)).text();
    expect(metrics).toMatch(/^gitgate_audit_push_failures_total\{replica="r2"\} 0$/m);
    expect(metrics).toMatch(/^gitgate_audit_push_pending\{replica="r2"\} [01]$/m);
  }, 120_000);

  it('the parked call survives the SIGKILL of its replica: approved through another, the retry runs once', async () => {
    const lb = await startBalancer(
      procs.map((p) => p.url),
      { sticky: true },
    );
    const token = await idp.mint({ sub: 'alice', groups: ['eng'], github_login: 'alice-gh' });
    const holder = procs[0]!;
    const c = await connectClient(`${holder.url}/mcp/gh`, token);
    const held = c.client.callTool({ name: 'echo', arguments: { message: 'kill-me' } }).then(
      () => 'answered',
      () => 'cut',
    );
    // Parked, durable in the store, its pull request open: then the replica holding it dies.
    const q = new pg.Client({ connectionString: db.url });
    await q.connect();
    let pr = '';
    try {
      await expect
        .poll(
          async () => {
            const r = await q.query(
              "SELECT remote_ref FROM procs.approvals WHERE status = 'pending' AND remote_ref IS NOT NULL",
            );
            pr = (r.rows[0]?.remote_ref as string | undefined) ?? '';
            return pr;
          },
          { timeout: 20_000 },
        )
        .not.toBe('');
      holder.child.kill('SIGKILL');
      expect(await held).toBe('cut');
      const hook = await gh.deliver(
        `${lb.url}/webhooks/github`,
        'pull_request_review',
        gh.review(Number(pr), { login: 'sam', state: 'approved' }),
        SECRET,
      );
      expect(hook.status).toBe(202);
      const retry = await connectClient(`${lb.url}/mcp/gh`, token);
      expect(await retry.client.callTool({ name: 'echo', arguments: { message: 'kill-me' } })).toMatchObject({
        content: [{ type: 'text', text: 'echo: kill-me' }],
      });
      expect(upstream.calls.filter((x) => x.tool === 'echo' && x.message === 'kill-me')).toHaveLength(1);
      const row = await q.query('SELECT status, updated_by FROM procs.approvals WHERE remote_ref = $1', [pr]);
      expect(row.rows[0]).toMatchObject({ status: 'executed', updated_by: expect.stringMatching(/^r[23]$/) });
      await retry.close();
    } finally {
      await q.end();
      await lb.close();
    }
    await c.client.close().catch(() => undefined);
    expect(gh.violations).toEqual([]);
  }, 120_000);

  // The CLI runs in this process here: what is checked is what the commands find, not the process.
  it('each replica is its own audit log: every one verifies after the crash (the killed one on restart)', async () => {
    const [killed, ...live] = procs;
    for (const p of live) {
      p.child.kill('SIGTERM');
      await new Promise((r) => p.child.once('exit', r));
    }
    // The killed replica recovers its write-ahead log on restart, then stops cleanly.
    const again = await serveProcess(['--config', killed!.config], env);
    again.child.kill('SIGTERM');
    await new Promise((r) => again.child.once('exit', r));
    const keys: string[] = [];
    for (const p of procs) {
      const key = await gitgateInProcess(['audit', 'public-key', '--data-dir', p.dataDir]);
      keys.push(key.stdout.trim());
      const v = await gitgateInProcess(['audit', 'verify', path.join(p.dataDir, 'audit'), '--key', key.stdout.trim()]);
      expect(v, v.stdout).toMatchObject({ code: 0, stdout: expect.stringMatching(/^ok: /) });
    }
    // All replicas' logs in one command, through the shared audit repo: each replica's branch is its log,
    // each checkpoint signed by one of the keys, a summary over all.
    const repos = procs.map((p) => path.join(p.dataDir, 'audit'));
    const branches = (await execFileP('git', ['-C', shared, 'for-each-ref', '--format=%(refname)'])).stdout;
    expect(branches.trim().split('\n').sort()).toEqual(['r1', 'r2', 'r3'].map((r) => `refs/heads/replica/${r}`));
    for (const r of ['r1', 'r2', 'r3']) {
      // Every commit of the replica's own repo reached its branch; its stream names carry the replica.
      const local = (await execFileP('git', ['-C', repos[Number(r[1]) - 1]!, 'rev-parse', 'HEAD'])).stdout;
      const pushed = (await execFileP('git', ['-C', shared, 'rev-parse', `replica/${r}`])).stdout;
      expect(pushed).toBe(local);
      const files = (await execFileP('git', ['-C', shared, 'ls-tree', '-r', '--name-only', `replica/${r}`])).stdout;
      const streams = files.split('\n').filter((f) => f.startsWith('streams/'));
      expect(streams.length).toBeGreaterThan(0);
      for (const f of streams) expect(f).toMatch(new RegExp(`^streams/[a-z]+/\\d{4}-\\d{2}-\\d{2}/${r}/`));
    }
    const all = await gitgateInProcess(['audit', 'verify', shared, ...keys.flatMap((k) => ['--key', k])]);
    expect(all.code, all.stdout).toBe(0);
    const lines = all.stdout.trim().split('\n');
    for (const r of ['r1', 'r2', 'r3'])
      expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^${shared} replica/${r}: ok: \\d+ record`)));
    const total = lines
      .filter((l) => / ok: \d+ record/.test(l))
      .reduce((n, l) => n + Number(/ ok: (\d+) record/.exec(l)![1]), 0);
    expect(lines.at(-1)).toMatch(new RegExp(`^ok: 3 log\\(s\\), ${total} record\\(s\\) in \\d+ stream\\(s\\)$`));
    // The replicas' own repos hold exactly what the shared one does.
    const own = await gitgateInProcess(['audit', 'verify', ...repos, ...keys.flatMap((k) => ['--key', k])]);
    expect(own.code, own.stdout).toBe(0);
    expect(own.stdout.trim().split('\n').at(-1)).toBe(lines.at(-1));
    // One replica's key missing: its log fails, so does the whole.
    const short = await gitgateInProcess(['audit', 'verify', shared, '--key', keys[0]!, '--key', keys[1]!]);
    expect(short.code).toBe(1);
    expect(short.stdout).toMatch(new RegExp(`^${shared} replica/r3: FAILED at checkpoint`, 'm'));
    expect(short.stdout.trim().split('\n').at(-1)).toBe('FAILED: 1 of 3 log(s)');
    // The same log twice does not stand in for another replica's.
    const twice = await gitgateInProcess([
      'audit',
      'verify',
      shared,
      repos[0]!,
      '--key',
      keys[0]!,
      '--key',
      keys[1]!,
      '--key',
      keys[2]!,
    ]);
    expect(twice.code).toBe(1);
    expect(twice.stdout).toContain('the same log (gitgate.audit/');
    // A replica's branch deleted from the shared repo: its key signed none of the logs left, so verify fails.
    const cut = path.join(await mkdtemp(path.join(tmpdir(), 'gitgate-shared-cut-')), 'audit.git');
    await execFileP('git', ['clone', '-q', '--mirror', shared, cut]);
    await execFileP('git', ['-C', cut, 'update-ref', '-d', 'refs/heads/replica/r3']);
    const gone = await gitgateInProcess(['audit', 'verify', cut, ...keys.flatMap((k) => ['--key', k])]);
    expect(gone.code, gone.stdout).toBe(1);
    expect(gone.stdout).toMatch(/FAILED: no log given is signed by the key of \S+: that replica's log is missing/);

    // The policy impact replay reads every replica's records: echo no longer needing approval flips the
    // parked call's decision, whichever replica recorded it.
    const policy = await PolicyRepo.create(policyData(ECHO_APPROVAL));
    const base = await policy.commit('base');
    const head = await policy.write('policies/config/data.json', JSON.stringify(policyData({}))).commit('no approval');
    const impact = await gitgateInProcess([
      'policy',
      'impact',
      '--repo',
      policy.dir,
      '--base',
      base,
      '--head',
      head,
      '--audit',
      shared,
      '--format',
      'json',
      '--guard',
      'none',
    ]);
    expect(impact.code, impact.stderr).toBe(0);
    const report = JSON.parse(impact.stdout) as {
      records: number;
      replayed: number;
      transitions: Record<string, number>;
    };
    expect(report.records).toBe(total);
    expect(report.replayed).toBeGreaterThan(0);
    expect(Object.keys(report.transitions).some((t) => t.startsWith('approval->allow'))).toBe(true);
  }, 180_000);
});
