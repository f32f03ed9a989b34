import type { McpError } from '@modelcontextprotocol/sdk/types.js';
import { createRemoteJWKSet, decodeJwt, jwtVerify } from 'jose';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PgStore } from '../../src/store/postgres.js';
// @ts-expect-error plain JS fixture
import { startHttpServer } from '../fixtures/demo-server.mjs';
import { startBalancer } from '../helpers/balancer.js';
import { connectClient } from '../helpers/client.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { SECRET } from '../helpers/github-approvals.js';
import { GitHubEmulator } from '../helpers/github-emulator.js';
import { startOidcIssuer } from '../helpers/oidc-issuer.js';
import { makePolicyDir, TEST_POLICY_DATA } from '../helpers/policy.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { RawMcp } from '../helpers/raw-mcp.js';

/**
 * Three gitgate replicas (in process, each its own data dir, audit repo and real HTTP port) on one real
 * PostgreSQL, behind a round-robin loopback balancer, with a shared OIDC issuer, the GitHub emulator and a
 * real MCP upstream. The balancer is sticky on Mcp-Session-Id (sessions are per replica, docs/scale-out.md);
 * every new session, webhook and JWKS fetch is round-robin.
 */
type Outcome = { ok: true; content: unknown } | { ok: false; code: number; message: string; data: { url: string } };

describe('replicas sharing approvals, deliveries, keys and rates through PostgreSQL', () => {
  let db: TestPostgres;
  let gh: GitHubEmulator;
  let idp: Awaited<ReturnType<typeof startOidcIssuer>>;
  let upstream: { url: string; calls: { tool: string; message?: string }[]; close(): Promise<void> };
  const replicas: TestGateway[] = [];
  let lb: Awaited<ReturnType<typeof startBalancer>>;

  beforeAll(async () => {
    db = await startPostgres();
    process.env.GITGATE_TEST_PG_URL = db.url;
    gh = await new GitHubEmulator().start();
    gh.team('acme', 'security', ['sam', 'sue']);
    idp = await startOidcIssuer();
    upstream = await startHttpServer();
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
        limited: {
          full_access_groups: ['eng'],
          public_tools: ['add'],
          high_risk_tools: {},
          mask: [],
          credential_ttl_seconds: 60,
          rate: { calls: 5, window_seconds: 3600 },
        },
        open: {
          full_access_groups: ['eng'],
          public_tools: ['add'],
          high_risk_tools: {},
          mask: [],
          credential_ttl_seconds: 60,
        },
        capped: {
          full_access_groups: ['eng'],
          public_tools: ['add'],
          high_risk_tools: {},
          mask: [],
          credential_ttl_seconds: 60,
        },
      },
    });
    for (const id of ['r1', 'r2', 'r3'])
      replicas.push(
        await startGateway({
          policyDir,
          upstreams: {
            // Quotas count across replicas: the race below holds eleven of alice's sessions at once.
            gh: { url: upstream.url, maxSessions: 64, maxSessionsPerCaller: 32 },
            limited: { url: upstream.url },
            open: { url: upstream.url },
            capped: { url: upstream.url, maxSessions: 3, maxSessionsPerCaller: 2 },
          },
          identity: { mode: 'oidc', issuer: idp.issuer, audience: 'gitgate' },
          credentials: { issuer: 'urn:gitgate:test' },
          approvals: {
            provider: 'github',
            github: {
              baseUrl: gh.url,
              owner: 'acme',
              repo: 'approvals',
              token: { fromEnv: 'GITGATE_TEST_GH_TOKEN' },
            },
            webhookSecret: { fromEnv: 'GITGATE_TEST_WEBHOOK_SECRET' },
            pollSeconds: 3600,
          },
          store: { postgres: { url: { fromEnv: 'GITGATE_TEST_PG_URL' }, schema: 'replicas', replicaId: id } },
        }),
      );
    lb = await startBalancer(
      replicas.map((r) => r.url),
      { sticky: true },
    );
  }, 120_000);

  afterAll(async () => {
    await lb?.close();
    for (const r of replicas) await r.close().catch(() => undefined);
    await upstream?.close();
    await idp?.close();
    await gh?.close();
    await db?.destroy();
  });

  const token = () => idp.mint({ sub: 'alice', groups: ['eng'], github_login: 'alice-gh' });
  const client = async (name = 'gh') => connectClient(`${lb.url}/mcp/${name}`, await token());
  async function call(c: Awaited<ReturnType<typeof client>>, message: string): Promise<Outcome> {
    try {
      const r = await c.client.callTool({ name: 'echo', arguments: { message } });
      return { ok: true, content: r.content };
    } catch (e) {
      const err = e as McpError;
      return { ok: false, code: err.code, message: err.message, data: err.data as { url: string } };
    }
  }
  const prOf = (o: Outcome) => Number(/\/pull\/(\d+)$/.exec((o as { data: { url: string } }).data.url)![1]);
  const echoes = (message: string) => upstream.calls.filter((c) => c.tool === 'echo' && c.message === message).length;

  it('/readyz shows each replica its id and policy revision; every /metrics series carries the replica', async () => {
    const digests = new Set<string>();
    for (const [i, r] of replicas.entries()) {
      const id = `r${i + 1}`;
      const ready = (await (await fetch(`${r.url}/readyz`)).json()) as {
        replica?: string;
        policy: { bundle_digest: string } | null;
        store: { replica: string };
      };
      expect(ready).toMatchObject({ replica: id, store: { replica: id } });
      digests.add(ready.policy!.bundle_digest);
      const metrics = await (await fetch(`${r.url}/metrics`)).text();
      const series = metrics.split('\n').filter((l) => l !== '' && !l.startsWith('#'));
      expect(series.length).toBeGreaterThan(0);
      expect(series.filter((l) => !l.includes(`replica="${id}"`))).toEqual([]);
      expect(metrics).toMatch(new RegExp(`^gitgate_policy_info\\{[^}]*replica="${id}"[^}]*\\} 1$`, 'm'));
    }
    expect(digests.size).toBe(1); // one policy, the same revision on every replica
  });

  it('migrations are versioned and applied once, also when replicas start together', async () => {
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    try {
      const r = await c.query('SELECT version FROM replicas.schema_migrations ORDER BY version');
      expect(r.rows).toEqual([{ version: 1 }, { version: 2 }, { version: 3 }]);
    } finally {
      await c.end();
    }
    // Three more replicas' worth of migrations racing on a fresh schema: one applies, the others find it done.
    const stores = await Promise.all(
      ['a', 'b', 'c'].map((id) => PgStore.open({ url: db.url, schema: 'race', poolMax: 1, replicaId: id })),
    );
    const again = await stores[0]!.migrate();
    expect(again).toEqual({ applied: [], current: 3 });
    for (const s of stores) await s.close();
  });

  it('a call parked through one replica, approved by a webhook landing on another, runs exactly once when ten identical retries race across all three', async () => {
    const first = await client();
    const parked = await call(first, 'race-me');
    expect(parked).toMatchObject({ ok: false, code: -32011 });
    const pr = prOf(parked);
    // The approving webhook lands on a replica the first call did not go through (through the balancer, round-robin).
    const hook = await gh.deliver(
      `${lb.url}/webhooks/github`,
      'pull_request_review',
      gh.review(pr, { login: 'sam', state: 'approved' }),
      SECRET,
    );
    expect(hook.status).toBe(202);
    // Ten clients, their sessions spread round-robin over the replicas, retry the identical call at once.
    const clients = await Promise.all(Array.from({ length: 10 }, () => client()));
    const outcomes = await Promise.all(clients.map((c) => call(c, 'race-me')));
    expect(
      outcomes.filter((o) => o.ok),
      JSON.stringify(outcomes),
    ).toHaveLength(1);
    expect(outcomes.filter((o) => !o.ok).every((o) => !o.ok && o.code === -32011)).toBe(true);
    expect(echoes('race-me')).toBe(1);
    // In the store: executed, claimed by one replica, one executed event.
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    try {
      const row = await c.query('SELECT id, status, updated_by FROM replicas.approvals WHERE remote_ref = $1', [
        String(pr),
      ]);
      expect(row.rows).toEqual([
        { id: expect.any(String), status: 'executed', updated_by: expect.stringMatching(/^r[123]$/) },
      ]);
      const ev = await c.query(
        "SELECT count(*)::int AS n FROM replicas.approval_events WHERE approval_id = $1 AND type = 'approval.executed'",
        [row.rows[0].id],
      );
      expect(ev.rows[0].n).toBe(1);
    } finally {
      await c.end();
    }
    for (const c of [first, ...clients]) await c.close();
    expect(gh.violations).toEqual([]);
  });

  it('a replayed webhook delivery is a duplicate on every replica, not only the one that handled it', async () => {
    const c = await client();
    const parked = await call(c, 'dedupe-me');
    const payload = gh.review(prOf(parked), { login: 'sue', state: 'commented' });
    const statuses: number[] = [];
    for (const r of replicas)
      statuses.push(
        (await gh.deliver(`${r.url}/webhooks/github`, 'pull_request_review', payload, SECRET, { delivery: 'd-1' }))
          .status,
      );
    expect(statuses).toEqual([202, 200, 200]);
    await c.close();
  });

  it('a call held on one replica is released when the approval lands on another (LISTEN/NOTIFY)', async () => {
    const holder = replicas[0]!;
    const c = await connectClient(`${holder.url}/mcp/gh`, await token());
    const parked = await call(c, 'hold-me');
    const pr = prOf(parked);
    // Hold on replica 1 (the admit path with a hold): the release comes from replica 3's webhook.
    const a = holder.gw.approvals.list().find((x) => x.remote?.ref === String(pr))!;
    const ticket = await holder.gw.approvals.admit({
      caller: { sub: 'alice', issuer: idp.issuer, githubLogin: 'alice-gh' },
      call: {
        upstream: 'gh',
        method: 'tools/call',
        tool: 'echo',
        arguments: { message: 'hold-me' },
        rawParams: { name: 'echo', arguments: { message: 'hold-me' } },
      },
      approvers: a.approvers,
      minApprovals: a.minApprovals,
      ttlSeconds: 900,
      reasons: a.reasons,
      risk: a.risk,
      policy: a.policy,
    });
    expect(ticket).toMatchObject({ kind: 'wait', approval: { id: a.id } });
    const ctl = new AbortController();
    const held = holder.gw.approvals.hold(ticket, { holdMs: 60_000, signal: ctl.signal });
    const released = (async () => {
      let r = await held.next();
      while (r.done !== true) r = await held.next();
      return r.value;
    })();
    const trips = () => replicas.map((r) => r.gw.store!.db.roundTrips);
    const before = trips();
    const hook = await gh.deliver(
      `${replicas[2]!.url}/webhooks/github`,
      'pull_request_review',
      gh.review(pr, { login: 'sue', state: 'approved' }),
      SECRET,
    );
    expect(hook.status).toBe(202);
    const t = await released;
    // Counted once the outcome is reported too (its write is the last of this approval's).
    const q = new pg.Client({ connectionString: db.url });
    await q.connect();
    try {
      for (let i = 0; i < 400; i++) {
        const r = await q.query("SELECT record->>'finished' AS f FROM replicas.approvals WHERE id = $1", [a.id]);
        if (r.rows[0]?.f === 'true') break;
        await new Promise((r) => setTimeout(r, 25));
      }
    } finally {
      await q.end();
    }
    const spent = trips().map((n, i) => n - before[i]!);
    ctl.abort();
    expect(t).toMatchObject({ kind: 'go', approval: { id: a.id, status: 'executed' } });
    // The webhook replica: dedupe, the row, the approved row written once, its event, the delivery, then the
    // claim's and the outcome's rows read on their NOTIFYs. The holder read the approved row once on its
    // NOTIFY and, its fresh provider read matching the stored state, wrote nothing but the claim and the
    // outcome. The bystander read each of the three changes once: [3, 3, 7] at the least. Each bound leaves two
    // to spare for a replica's own timers (a key heartbeat, a session sweep), which a slow machine can fit into
    // the release; before the release path was trimmed: [6, 5, 10] or more (the holder's and the webhook's fail).
    expect(spent[0], JSON.stringify(spent)).toBeLessThanOrEqual(5);
    expect(spent[1], JSON.stringify(spent)).toBeLessThanOrEqual(5);
    expect(spent[2], JSON.stringify(spent)).toBeLessThanOrEqual(9);
    // Claimed once: the identical retry through any replica is told it was used.
    expect(await call(c, 'hold-me')).toMatchObject({ ok: false, code: -32011 });
    await c.close();
  });

  it('the JWKS through the balancer verifies credentials minted by every replica', async () => {
    const jwks = createRemoteJWKSet(new URL(`${lb.url}/.well-known/jwks.json`), { cooldownDuration: 0 });
    for (let i = 0; i < 3; i++) {
      const body = (await (await fetch(`${lb.url}/.well-known/jwks.json`)).json()) as {
        keys: { kid: string; d?: string }[];
      };
      expect(body.keys.length).toBeGreaterThanOrEqual(3);
      expect(body.keys.every((k) => k.d === undefined)).toBe(true);
    }
    for (const r of replicas) {
      const auth = r.gw.credentials.forCall(r.gw.config.upstreams.gh!, { subject: 'alice', method: 'tools/call' });
      const jwt = auth.headers.authorization!.replace(/^Bearer /, '');
      const { payload } = await jwtVerify(jwt, jwks, { issuer: 'urn:gitgate:test', audience: upstream.url });
      expect(payload.sub).toBe('alice');
      expect(decodeJwt(jwt).sub).toBe('alice');
    }
  });

  it('a rotated key is published to every replica', async () => {
    const r = replicas[1]!;
    const before = r.gw.credentials.keys.signing().kid;
    const { kid } = await r.gw.credentials.rotate(Date.now(), 0);
    const kids = async (g: TestGateway) =>
      ((await (await fetch(`${g.url}/.well-known/jwks.json`)).json()) as { keys: { kid: string }[] }).keys.map(
        (k) => k.kid,
      );
    // Every replica serves the new key and, until its tokens expired, the one it replaced.
    for (const g of replicas) expect(await kids(g)).toEqual(expect.arrayContaining([kid, before]));
    expect(r.gw.credentials.keys.signing().kid).toBe(kid);
  });
  it('a rate counts across replicas, and the plain allow path sends the store nothing', async () => {
    const trips = () => replicas.map((r) => r.gw.store!.db.roundTrips);
    // Three sessions, one per replica (round-robin), eight calls in all against a rate of five.
    const limited = await Promise.all([client('limited'), client('limited'), client('limited')]);
    const results: boolean[] = [];
    for (let i = 0; i < 8; i++)
      results.push(
        await limited[i % 3]!.client.callTool({ name: 'add', arguments: { a: i, b: 1 } }).then(
          () => true,
          () => false,
        ),
      );
    expect(results.filter(Boolean)).toHaveLength(5);
    const open = await Promise.all([client('open'), client('open'), client('open')]);
    const before = trips();
    for (let i = 0; i < 9; i++) await open[i % 3]!.client.callTool({ name: 'add', arguments: { a: i, b: 2 } });
    expect(trips()).toEqual(before);
    for (const c of [...limited, ...open]) await c.close();
  });

  it("one poller at a time: the lease passes to another replica when its holder's connection ends", async () => {
    const a = await PgStore.open({ url: db.url, schema: 'lease', poolMax: 1, replicaId: 'a' });
    const b = await PgStore.open({ url: db.url, schema: 'lease', poolMax: 1, replicaId: 'b' });
    try {
      expect(await a.holdLease('approvals-poller')).toBe(true);
      expect(await b.holdLease('approvals-poller')).toBe(false);
      expect(await a.holdLease('approvals-poller')).toBe(true);
      await a.close(); // what the death of its process does to its connection
      expect(await b.holdLease('approvals-poller')).toBe(true);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('the database stopped under load: nothing needing it is forwarded, /readyz fails on every replica, and both recover by themselves', async () => {
    const c = await client();
    const parked = await call(c, 'outage-me');
    expect(parked).toMatchObject({ ok: false, code: -32011 });
    const limited = await client('limited');
    const open = await client('open');
    const echoesBefore = echoes('outage-me');
    await db.stop();
    try {
      for (const r of replicas) {
        const res = await fetch(`${r.url}/readyz`);
        expect(res.status).toBe(503);
        const body = (await res.json()) as { problems: string[]; store: { reachable: boolean } };
        expect(body.store.reachable).toBe(false);
        expect(body.problems.some((p) => p.startsWith('shared store unreachable'))).toBe(true);
      }
      // An approval it cannot read or write releases nothing; a rate it cannot count grants nothing.
      const during = await call(c, 'outage-me');
      // HTTP 503 (STORE_UNAVAILABLE, JSON-RPC -32025 in the body): the SDK reports the HTTP status.
      expect(during).toMatchObject({ ok: false, code: 503, message: expect.stringContaining('-32025') });
      const rated = await limited.client.callTool({ name: 'add', arguments: { a: 1, b: 1 } }).catch((e: McpError) => e);
      expect(rated).toMatchObject({ code: 503, message: expect.stringContaining('-32025') });
      expect(echoes('outage-me')).toBe(echoesBefore);
      // A webhook that cannot be deduplicated is not taken (GitHub redelivers).
      const hook = await gh.deliver(
        `${lb.url}/webhooks/github`,
        'pull_request_review',
        gh.review(prOf(parked), { login: 'sam', state: 'approved' }),
        SECRET,
      );
      expect(hook.status).toBe(503);
      // What needs none of it (an allowed call without a rate) still works.
      expect(await open.client.callTool({ name: 'add', arguments: { a: 2, b: 2 } })).toMatchObject({
        content: [{ type: 'text', text: '4' }],
      });
    } finally {
      await db.start();
    }
    for (const r of replicas)
      await expect.poll(async () => (await fetch(`${r.url}/readyz`)).status, { timeout: 20_000 }).toBe(200);
    await gh.deliver(
      `${lb.url}/webhooks/github`,
      'pull_request_review',
      gh.review(prOf(parked), { login: 'sam', state: 'approved' }),
      SECRET,
    );
    expect(await call(c, 'outage-me')).toMatchObject({ ok: true });
    expect(echoes('outage-me')).toBe(echoesBefore + 1);
    for (const x of [c, limited, open]) await x.close();
  });
  it('a session opened through one replica continues through the others (its id sealed: unreadable, unforgeable, bound to its caller)', async () => {
    const rr = await startBalancer(replicas.map((r) => r.url)); // plain round-robin, no stickiness
    try {
      const c = await connectClient(`${rr.url}/mcp/open`, await token());
      const sid = c.transport.sessionId!;
      expect(sid).toMatch(/^gs1\./);
      expect(sid).not.toContain('alice');
      const served = rr.served.length;
      for (let i = 0; i < 6; i++)
        expect(await c.client.callTool({ name: 'add', arguments: { a: i, b: 10 } })).toMatchObject({
          content: [{ type: 'text', text: String(i + 10) }],
        });
      expect((await c.client.listTools()).tools.map((t) => t.name)).toContain('add');
      expect(new Set(rr.served.slice(served))).toEqual(new Set(replicas.map((r) => r.url)));
      // The same id from another caller, or altered by one bit, is no session at all, on every replica.
      const post = (id: string, bearer: string, url: string) =>
        fetch(`${url}/mcp/open`, {
          method: 'POST',
          headers: {
            authorization: `Bearer ${bearer}`,
            'content-type': 'application/json',
            accept: 'application/json, text/event-stream',
            'mcp-session-id': id,
          },
          body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
        });
      const mallory = await idp.mint({ sub: 'mallory', groups: ['eng'] });
      const last = sid.at(-2) === 'A' ? 'B' : 'A';
      const altered = `${sid.slice(0, -2)}${last}${sid.at(-1)}`;
      for (const r of replicas) {
        expect((await post(sid, mallory, r.url)).status).toBe(404);
        expect((await post(altered, await token(), r.url)).status).toBe(404);
      }
      await c.close();
      // Ended by the client (DELETE, through any replica): over on every replica.
      for (const r of replicas) expect((await post(sid, await token(), r.url)).status).toBe(404);
    } finally {
      await rr.close();
    }
  });
  it('session caps and per-caller quotas count across replicas', async () => {
    const rr = await startBalancer(replicas.map((r) => r.url));
    const as = async (sub: string) => {
      const t = await idp.mint({ sub, groups: ['eng'] });
      return connectClient(`${rr.url}/mcp/capped`, t).catch((e: Error) => e);
    };
    try {
      const a1 = await as('alice');
      const a2 = await as('alice');
      expect(a1).not.toBeInstanceOf(Error);
      expect(a2).not.toBeInstanceOf(Error);
      // The third lands on the third replica, which holds none of alice's sessions: refused all the same.
      expect(String(await as('alice'))).toMatch(/-32007.*across all replicas/);
      const b1 = await as('bob');
      expect(b1).not.toBeInstanceOf(Error);
      expect(String(await as('carol'))).toMatch(/-32006.*across all replicas/);
      // A session the client ends (DELETE, on whichever replica) gives its slot back everywhere.
      await (a1 as Exclude<typeof a1, Error>).close();
      const a3 = await as('alice');
      expect(a3).not.toBeInstanceOf(Error);
      for (const c of [a2, b1, a3]) if (!(c instanceof Error)) await c.close();
    } finally {
      await rr.close();
    }
  });

  it('a sealed session that idled out everywhere does not come back through another replica, outside the caps', async () => {
    const t = await idp.mint({ sub: 'dora', groups: ['eng'] });
    const open = async (r: TestGateway) => {
      const m = new RawMcp(`${r.url}/mcp/capped`, t);
      await m.initialize();
      return m;
    };
    const first = [await open(replicas[0]!), await open(replicas[0]!)];
    // Both go unused past idleTimeoutMs on every replica: their slots stop counting (the database's clock).
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    try {
      await c.query(
        "UPDATE replicas.session_slots SET last_seen = now() - interval '1 hour' WHERE upstream = 'capped'",
      );
    } finally {
      await c.end();
    }
    // Dora's quota is hers again: two new sessions, through another replica.
    const second = [await open(replicas[1]!), await open(replicas[1]!)];
    // The idled-out ones, continued through that replica by their sealed ids: unknown, not resumed uncounted.
    for (const s of first) {
      const on2 = new RawMcp(`${replicas[1]!.url}/mcp/capped`, t);
      on2.sessionId = s.sessionId;
      expect((await on2.post({ jsonrpc: '2.0', id: 7, method: 'tools/list' })).status).toBe(404);
    }
    for (const s of second) expect((await s.post({ jsonrpc: '2.0', id: 8, method: 'tools/list' })).status).toBe(200);
    // Ended by the client: their slots go back.
    for (const s of second)
      await fetch(`${replicas[1]!.url}/mcp/capped`, {
        method: 'DELETE',
        headers: {
          authorization: `Bearer ${t}`,
          'mcp-session-id': s.sessionId ?? '',
          'mcp-protocol-version': '2025-11-25',
        },
      });
  });
});
