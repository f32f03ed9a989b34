/**
 * GitOps delivery latency: from a commit landing on the policy branch (push
 * webhook sent, or nothing: polling) to the first request decided by the new
 * revision, over N commits that carry a CI-built bundle.
 *   npx tsx bench/gitops.ts   (COMMITS=20, POLL_SECONDS=1)
 */
import { rmSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { validateConfig } from '../src/config/load.js';
import { createGateway } from '../src/gateway.js';
import { sourcesDigest } from '../src/gitsync/sources-digest.js';
import { buildPolicyBundle } from '../src/policy/build.js';
import { ensureOpa } from '../src/policy/opa-binary.js';
import { signBody } from '../src/webhooks/verify-and-receive.js';
import { PolicyRepo } from '../test/helpers/policy-repo.js';

const N = Number(process.env.COMMITS ?? 20);
const POLL = Number(process.env.POLL_SECONDS ?? 1);
const SECRET = 'bench-secret';

async function run(mode: 'webhook' | 'polling'): Promise<number[]> {
  const opa = await ensureOpa();
  const repo = await PolicyRepo.create({ version: 0 });
  const publish = async (i: number) => {
    repo.write(
      'policies/gitgate/decision.rego',
      `package gitgate\n\nv := ${i}\n\ndecision := {"allow": false, "reasons": [sprintf("v=%d", [v])]}\n`,
    );
    const dir = path.join(repo.dir, 'policies');
    rmSync(path.join(dir, 'bundle.tar.gz'), { force: true });
    await buildPolicyBundle({ opa, srcDir: dir, outDir: dir, revision: sourcesDigest(dir) });
    rmSync(path.join(dir, 'capabilities.json'), { force: true });
    return repo.commit(`v${i}`);
  };
  await publish(0);
  const dataDir = await mkdtemp(path.join(tmpdir(), 'gitgate-bench-gitops-'));
  process.env.GITGATE_BENCH_GITOPS_SECRET = SECRET;
  const config = validateConfig(
    {
      server: { port: 0 },
      dataDir,
      policy: { dir: dataDir, repo: { url: repo.dir, pollSeconds: mode === 'webhook' ? 3600 : POLL, compile: false } },
      approvals: { webhookSecret: { fromEnv: 'GITGATE_BENCH_GITOPS_SECRET' } },
      upstreams: { http: { url: 'http://127.0.0.1:9/unused' } },
      audit: { enabled: false },
      log: { level: 'silent' },
    },
    {},
    dataDir,
    'bench',
  );
  const gw = await createGateway(config, { logger: pino({ level: 'silent' }) });
  const url = await gw.listen();
  const token = await gw.devIssuer!.mint({ sub: 'bench', audience: 'gitgate' });
  const decidedBy = async () => {
    const res = await fetch(`${url}/mcp/http`, {
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
        params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'b', version: '1' } },
      }),
    });
    return ((await res.json()) as { error?: { data?: { reasons?: string[] } } }).error?.data?.reasons?.[0];
  };
  const lat: number[] = [];
  for (let i = 1; i <= N; i++) {
    await publish(i);
    const t0 = performance.now();
    if (mode === 'webhook') {
      const body = JSON.stringify({ ref: 'refs/heads/main' });
      await fetch(`${url}/webhooks/github`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'x-github-event': 'push',
          'x-github-delivery': `d-${i}`,
          'x-hub-signature-256': signBody(SECRET, body),
        },
        body,
      });
    }
    for (let t = 0; t < 20_000; t++) {
      if ((await decidedBy()) === `v=${i}`) break;
      await new Promise((r) => setTimeout(r, 5));
    }
    lat.push(performance.now() - t0);
  }
  await gw.close();
  return lat.sort((a, b) => a - b);
}

async function main(): Promise<void> {
  for (const mode of ['webhook', 'polling'] as const) {
    const lat = await run(mode);
    console.log(
      `${mode.padEnd(8)} push → first request decided by the new revision, ${N} commits (CI-built bundles${mode === 'polling' ? `, poll every ${POLL} s` : ''}): median ${lat[Math.floor(N / 2)]!.toFixed(0)} ms, worst ${lat.at(-1)!.toFixed(0)} ms`,
    );
  }
}

void main();
