/**
 * Approval release latency: from the approving webhook's arrival at gitgate to
 * the parked (held) call reaching the upstream, over N approvals. Gateway,
 * GitHub emulator and upstream share one process so both instants come from
 * one clock.   npx tsx bench/approvals.ts   (APPROVALS=100)
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { validateConfig } from '../src/config/load.js';
import { createGateway } from '../src/gateway.js';
// @ts-expect-error plain JS fixture
import { startHttpServer } from '../test/fixtures/demo-server.mjs';
import { connectClient } from '../test/helpers/client.js';
import { GitHubEmulator } from '../test/helpers/github-emulator.js';
import { makePolicyDir, TEST_POLICY_DATA } from '../test/helpers/policy.js';

const N = Number(process.env.APPROVALS ?? 100);
const SECRET = 'bench-secret';

async function main(): Promise<void> {
  process.env.GITGATE_BENCH_GH_TOKEN = 'ghs_bench';
  process.env.GITGATE_BENCH_WEBHOOK_SECRET = SECRET;
  const gh = await new GitHubEmulator().start();
  gh.team('acme', 'security', ['sam']);
  const upstream = (await startHttpServer()) as {
    url: string;
    calls: { tool: string; message: string; at: number }[];
    close(): Promise<void>;
  };
  const dataDir = await mkdtemp(path.join(tmpdir(), 'gitgate-bench-approvals-'));
  const policyDir = await makePolicyDir({
    ...TEST_POLICY_DATA,
    upstreams: {
      gh: {
        full_access_groups: ['eng'],
        public_tools: [],
        high_risk_tools: { echo: { approvers: ['@acme/security'], min_approvals: 1, ttl_seconds: 900 } },
        mask: [],
        credential_ttl_seconds: 60,
      },
    },
  });
  const config = validateConfig(
    {
      server: { port: 0 },
      dataDir,
      policy: { dir: policyDir },
      upstreams: { gh: { url: upstream.url } },
      approvals: {
        provider: 'github',
        holdSeconds: 60,
        pollSeconds: 3600,
        github: { baseUrl: gh.url, owner: 'acme', repo: 'approvals', token: { fromEnv: 'GITGATE_BENCH_GH_TOKEN' } },
        webhookSecret: { fromEnv: 'GITGATE_BENCH_WEBHOOK_SECRET' },
      },
      log: { level: 'silent' },
    },
    {},
    dataDir,
    'bench',
  );
  const gw = await createGateway(config, { logger: pino({ level: 'silent' }) });
  const url = await gw.listen();
  const c = await connectClient(
    `${url}/mcp/gh`,
    await gw.devIssuer!.mint({ sub: 'alice', groups: ['eng'], audience: 'gitgate' }),
  );
  const lat: number[] = [];
  for (let i = 0; i < N; i++) {
    const message = `release-${i}`;
    let prUrl = '';
    const held = c.client.callTool({ name: 'echo', arguments: { message } }, undefined, {
      onprogress: (p) => (prUrl = p.message ?? ''),
      timeout: 60_000,
    });
    for (let t = 0; t < 2000 && !/\/pull\/\d+/.test(prUrl); t++) await new Promise((r) => setTimeout(r, 2));
    const pr = Number(/\/pull\/(\d+)/.exec(prUrl)![1]);
    const payload = gh.review(pr, { login: 'sam', state: 'approved' });
    const t0 = performance.now();
    await gh.deliver(`${url}/webhooks/github`, 'pull_request_review', payload, SECRET);
    await held;
    const reached = upstream.calls.find((x) => x.message === message)!;
    lat.push(reached.at - t0);
  }
  lat.sort((a, b) => a - b);
  console.log(
    `approval release latency over ${N} approvals (webhook sent → call at the upstream): median ${lat[Math.floor(N / 2)]!.toFixed(2)} ms, p90 ${lat[Math.floor(N * 0.9)]!.toFixed(2)} ms, worst ${lat.at(-1)!.toFixed(2)} ms`,
  );
  if (gh.violations.length > 0) console.log(`GitHub emulator violations: ${gh.violations.join('; ')}`);
  await c.close();
  await gw.close();
  await upstream.close();
  await gh.close();
}

void main();
