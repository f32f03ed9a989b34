/**
 * Replicas benchmark (issue 17): tools/call on the allow path at 16 concurrent sessions through
 *   - one replica in file mode (no database),
 *   - one replica on PostgreSQL,
 *   - three replicas on PostgreSQL behind the round-robin loopback balancer (test/helpers/balancer.ts),
 * with throughput, p50/p99 and database round trips per exchange (target 0: the decision carries no
 * rate); then, on the three replicas, park-to-release latency: a call held on replica 1, the approving
 * webhook delivered to replica 2, timed from the webhook's send to the held call's answer (target < 50 ms),
 * and the round trips one approval costs. A real PostgreSQL (test/helpers/postgres.ts) and the GitHub
 * emulator; in-process gateways (test/helpers/gateway.ts); the load generator of bench/load.ts. Loopback only.
 *
 *   BENCH_REPLICAS=1 npm run bench                 (after the default bench)
 *   npx tsx bench/replicas.ts                      (alone)
 *   BENCH_REPLICAS_REQUESTS=200 BENCH_REPLICAS_APPROVALS=3 npx tsx bench/replicas.ts   (smoke)
 *
 * Env: BENCH_REPLICAS_REQUESTS (tools/call per setup, 3000), BENCH_REPLICAS_APPROVALS (approvals timed, 20),
 * BENCH_REPLICAS_CONCURRENCY (16).
 */
import { pathToFileURL } from 'node:url';
import pg from 'pg';
// @ts-expect-error plain JS fixture
import { startHttpServer } from '../test/fixtures/demo-server.mjs';
import { startBalancer } from '../test/helpers/balancer.js';
import { startGateway, type TestGateway } from '../test/helpers/gateway.js';
import { SECRET } from '../test/helpers/github-approvals.js';
import { GitHubEmulator } from '../test/helpers/github-emulator.js';
import { startOidcIssuer } from '../test/helpers/oidc-issuer.js';
import { makePolicyDir, TEST_POLICY_DATA } from '../test/helpers/policy.js';
import { startPostgres } from '../test/helpers/postgres.js';
import { type Call, openSession, percentile, type Target } from './load.js';

const REQUESTS = Number(process.env.BENCH_REPLICAS_REQUESTS ?? 3000);
const APPROVALS = Number(process.env.BENCH_REPLICAS_APPROVALS ?? 20);
const CONCURRENCY = Number(process.env.BENCH_REPLICAS_CONCURRENCY ?? 16);

const ALLOW: Call = { name: 'echo', arguments: { message: 'replica bench' }, expect: 'echo: replica bench' };

interface Measured {
  readonly setup: string;
  readonly rps: number;
  readonly p50: number;
  readonly p99: number;
  readonly tripsPerCall: number | undefined;
}

/** `total` calls over `concurrency` sessions opened beforehand; the round trips counted over the calls only. */
async function measure(setup: string, t: Target, gws: readonly TestGateway[]): Promise<Measured> {
  const calls = await Promise.all(Array.from({ length: CONCURRENCY }, () => openSession(t, ALLOW)));
  const trips = () => gws.reduce((n, g) => n + (g.gw.store?.db.roundTrips ?? 0), 0);
  let next = 0;
  const loop = async (call: (id: number) => Promise<void>, n: number, lat?: number[]) => {
    while (next < n) {
      const id = ++next;
      const t0 = process.hrtime.bigint();
      await call(id);
      lat?.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
  };
  await Promise.all(calls.map((c) => loop(c, Math.max(CONCURRENCY, Math.floor(REQUESTS / 10)))));
  next = 0;
  const lat: number[] = [];
  const before = trips();
  const start = process.hrtime.bigint();
  await Promise.all(calls.map((c) => loop(c, REQUESTS, lat)));
  const secs = Number(process.hrtime.bigint() - start) / 1e9;
  const used = trips() - before;
  lat.sort((a, b) => a - b);
  return {
    setup,
    rps: REQUESTS / secs,
    p50: percentile(lat, 50),
    p99: percentile(lat, 99),
    tripsPerCall: gws.some((g) => g.gw.store !== undefined) ? used / REQUESTS : undefined,
  };
}

export async function replicasBench(): Promise<void> {
  const db = await startPostgres();
  const gh = await new GitHubEmulator().start();
  gh.team('acme', 'security', ['sam']);
  const idp = await startOidcIssuer();
  const upstream = (await startHttpServer()) as { url: string; close(): Promise<void> };
  const gws: TestGateway[] = [];
  const closers: (() => Promise<unknown>)[] = [];
  process.env.GITGATE_BENCH_PG_URL = db.url;
  process.env.GITGATE_BENCH_GH_TOKEN = 'ghs_emulatortoken';
  process.env.GITGATE_BENCH_WEBHOOK_SECRET = SECRET;
  try {
    const grant = { full_access_groups: ['eng'], mask: [], credential_ttl_seconds: 60 };
    const policyDir = await makePolicyDir({
      ...TEST_POLICY_DATA,
      upstreams: {
        open: { ...grant, public_tools: ['echo'], high_risk_tools: {} },
        gh: {
          ...grant,
          public_tools: [],
          high_risk_tools: { echo: { approvers: ['@acme/security'], min_approvals: 1, ttl_seconds: 900 } },
        },
      },
    });
    const start = async (store?: { schema: string; replicaId: string }) => {
      const g = await startGateway({
        policyDir,
        upstreams: {
          open: { url: upstream.url, maxSessions: 256, maxSessionsPerCaller: 64 },
          gh: { url: upstream.url, maxSessions: 256, maxSessionsPerCaller: 64 },
        },
        identity: { mode: 'oidc', issuer: idp.issuer, audience: 'gitgate' },
        credentials: { issuer: 'urn:gitgate:bench' },
        ...(store !== undefined
          ? {
              approvals: {
                provider: 'github',
                holdSeconds: 30,
                pollSeconds: 3600,
                github: {
                  baseUrl: gh.url,
                  owner: 'acme',
                  repo: 'approvals',
                  token: { fromEnv: 'GITGATE_BENCH_GH_TOKEN' },
                },
                webhookSecret: { fromEnv: 'GITGATE_BENCH_WEBHOOK_SECRET' },
              },
              store: { postgres: { url: { fromEnv: 'GITGATE_BENCH_PG_URL' }, ...store } },
            }
          : {}),
      });
      gws.push(g);
      return g;
    };
    const token = await idp.mint({ sub: 'alice', groups: ['eng'], github_login: 'alice-gh' });
    const target = (name: string, base: string, up = 'open'): Target => ({
      name,
      url: `${base}/mcp/${up}`,
      headers: { authorization: `Bearer ${token}` },
    });
    const results: Measured[] = [];

    const file = await start();
    results.push(await measure('1 replica, file mode', target('file', file.url), [file]));
    await file.close();

    const one = await start({ schema: 'bench_one', replicaId: 'solo' });
    results.push(await measure('1 replica, PostgreSQL', target('pg1', one.url), [one]));
    await one.close();

    const three = [
      await start({ schema: 'bench_three', replicaId: 'r1' }),
      await start({ schema: 'bench_three', replicaId: 'r2' }),
      await start({ schema: 'bench_three', replicaId: 'r3' }),
    ];
    const lb = await startBalancer(three.map((r) => r.url));
    closers.push(() => lb.close());
    results.push(await measure('3 replicas, PostgreSQL, balancer', target('pg3', lb.url), three));

    // Park to release: held on r1, approved by a webhook landing on r2.
    const q = new pg.Client({ connectionString: db.url });
    await q.connect();
    closers.push(() => q.end());
    const releases: number[] = [];
    const approvalTrips: number[] = [];
    const trips = () => three.reduce((n, g) => n + (g.gw.store?.db.roundTrips ?? 0), 0);
    for (let i = 0; i < APPROVALS; i++) {
      const message = `approve-${i}`;
      const call = await openSession(target('held', three[0]!.url, 'gh'), {
        name: 'echo',
        arguments: { message },
        expect: `echo: ${message}`,
      });
      const before = trips();
      let answeredAt = 0n;
      const held = call(1).then(() => {
        answeredAt = process.hrtime.bigint();
      });
      let pr = '';
      for (let waited = 0; pr === '' && waited < 20_000; waited += 5) {
        const r = await q.query(
          "SELECT remote_ref FROM bench_three.approvals WHERE status = 'pending' AND remote_ref IS NOT NULL AND record->'call'->'arguments'->>'message' = $1",
          [message],
        );
        pr = (r.rows[0]?.remote_ref as string | undefined) ?? '';
        if (pr === '') await new Promise((r) => setTimeout(r, 5));
      }
      if (pr === '') throw new Error(`approval ${message} was never parked`);
      const t0 = process.hrtime.bigint();
      const hook = await gh.deliver(
        `${three[1]!.url}/webhooks/github`,
        'pull_request_review',
        gh.review(Number(pr), { login: 'sam', state: 'approved' }),
        SECRET,
      );
      if (hook.status !== 202) throw new Error(`the approving webhook answered ${hook.status}`);
      await held;
      releases.push(Number(answeredAt - t0) / 1e6);
      approvalTrips.push(trips() - before);
    }
    releases.sort((a, b) => a - b);
    approvalTrips.sort((a, b) => a - b);

    console.log(
      `\nreplicas (bench/replicas.ts): ${REQUESTS} tools/call on the allow path (no rate) per setup, ${CONCURRENCY} concurrent sessions`,
    );
    console.log('| setup | req/s | p50 ms | p99 ms | DB round trips / exchange |');
    console.log('|---|---|---|---|---|');
    for (const r of results)
      console.log(
        `| ${r.setup} | ${r.rps.toFixed(0)} | ${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} | ${r.tripsPerCall === undefined ? '— (no database)' : r.tripsPerCall.toFixed(3)} |`,
      );
    if (releases.length > 0)
      console.log(
        `park → release (held on r1, approving webhook on r2), ${releases.length} approval(s): median ${percentile(releases, 50).toFixed(1)} ms, p99 ${percentile(releases, 99).toFixed(1)} ms, max ${releases.at(-1)!.toFixed(1)} ms (target < 50 ms); DB round trips per approval (park to release, all replicas): median ${percentile(approvalTrips, 50)}`,
      );
  } finally {
    for (const c of closers.reverse()) await c().catch(() => undefined);
    for (const g of gws) await g.close().catch(() => undefined);
    await upstream.close();
    await idp.close();
    await gh.close();
    await db.destroy();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await replicasBench();
