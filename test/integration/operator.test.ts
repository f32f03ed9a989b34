import { existsSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { type Logger, pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// @ts-expect-error plain JS fixture
import { startHttpServer } from '../fixtures/demo-server.mjs';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { PolicyRepo } from '../helpers/policy-repo.js';
import { RawMcp } from '../helpers/raw-mcp.js';

/** A stdio MCP server that writes pid-<pid> when it starts, held-<pid> when it holds a `hold` call, and answers it on SIGUSR2. */
const HOLD_SERVER = `
import { writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
const dir = process.argv[2];
writeFileSync(dir + '/pid-' + process.pid, '');
const send = (m) => process.stdout.write(JSON.stringify(m) + '\\n');
const held = [];
process.on('SIGUSR2', () => { for (const id of held.splice(0)) send({ jsonrpc: '2.0', id, result: { content: [{ type: 'text', text: 'released' }] } }); });
createInterface({ input: process.stdin }).on('line', (line) => {
  const m = JSON.parse(line);
  if (m.id === undefined || m.method === undefined) return;
  if (m.method === 'initialize') return send({ jsonrpc: '2.0', id: m.id, result: { protocolVersion: m.params.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: 'hold', version: '1' } } });
  if (m.method === 'tools/list') return send({ jsonrpc: '2.0', id: m.id, result: { tools: [{ name: 'hold', inputSchema: { type: 'object' } }, { name: 'echo', inputSchema: { type: 'object' } }] } });
  if (m.method === 'tools/call' && m.params.name === 'hold') { held.push(m.id); writeFileSync(dir + '/held-' + process.pid, ''); return; }
  send({ jsonrpc: '2.0', id: m.id, result: { content: [{ type: 'text', text: 'ok' }] } });
});
process.stdin.on('end', () => process.exit(0));
`;

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** pino into an array, to read what an operator's log shipper would get. */
function capture(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n')) if (l !== '') lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return { logger: pino({ level: 'info' }, stream), lines };
}

interface Ready {
  ready: boolean;
  problems: string[];
  warnings: string[];
  policy: { revision: string | null };
  policy_sync: { commit?: string; refused?: { commit: string; message: string }; lastError?: { commit?: string } };
}

describe('the first day of an operator', () => {
  let upstream: { url: string; close(): Promise<void> };
  const gateways: TestGateway[] = [];
  beforeAll(async () => {
    upstream = await startHttpServer();
  });
  afterAll(async () => {
    for (const g of gateways) await g.close().catch(() => undefined);
    await upstream.close();
  });
  const ready = async (gw: TestGateway) => (await (await fetch(`${gw.url}/readyz`)).json()) as Ready;
  const metrics = async (gw: TestGateway) => (await fetch(`${gw.url}/metrics`)).text();

  it('a refused policy commit is an error log line with commit and reason, a metric, and a /readyz warning; the last good revision serves and ready stays true', async () => {
    const repo = await PolicyRepo.create();
    const { logger, lines } = capture();
    // No polling: the test drives every sync round itself.
    const gw = await startGateway({
      upstreams: { http: { url: upstream.url } },
      policyRepo: { url: repo.dir, pollSeconds: 3600 },
      options: { logger },
    });
    gateways.push(gw);
    const good = (await ready(gw)).policy.revision!;
    const bad = await repo
      .write('policies/gitgate/broken.rego', 'package gitgate\n\nthis is not rego\n')
      .commit('a bad change');
    await gw.gw.sync!.sync();

    const refusal = lines.filter((l) => l.commit === bad);
    expect(refusal).toHaveLength(1);
    expect(refusal[0]).toMatchObject({ level: 50, commit: bad, serving: good, branch: 'main' });
    expect(String(refusal[0]!.reason)).toMatch(/rego_parse_error/);
    expect(String(refusal[0]!.msg)).toContain(
      `policy commit ${bad.slice(0, 12)} refused; the last good revision ${good.slice(0, 12)} keeps serving`,
    );

    const r = await ready(gw);
    expect(r.ready).toBe(true);
    expect(r.problems).toEqual([]);
    expect(r.policy.revision).toBe(good);
    expect(r.policy_sync.refused).toMatchObject({ commit: bad, message: expect.stringMatching(/rego_parse_error/) });
    expect(r.warnings).toHaveLength(1);
    expect(r.warnings[0]).toContain(`policy commit ${bad} was refused`);
    expect(r.warnings[0]).toContain(`still serving ${good}`);

    const m = await metrics(gw);
    expect(m).toContain('gitgate_policy_sync_failures_total{kind="refused"} 1');
    expect(m).toContain('gitgate_policy_sync_failures_total{kind="fetch"} 0');
    expect(m).toContain(`gitgate_policy_refused_info{commit="${bad}"} 1`);

    // The same commit is not retried (and not counted again); a fixed one clears it all.
    await gw.gw.sync!.sync();
    expect(await metrics(gw)).toContain('gitgate_policy_sync_failures_total{kind="refused"} 1');
    const fixed = await repo.write('policies/gitgate/broken.rego', 'package gitgate\n\nfine := true\n').commit('fix');
    await gw.gw.sync!.sync();
    const after = await ready(gw);
    expect(after.policy.revision).toBe(fixed);
    expect(after.warnings).toEqual([]);
    expect(after.policy_sync.refused).toBeUndefined();
    expect(await metrics(gw)).not.toContain('gitgate_policy_refused_info{');
  });

  it('metrics: counters end in _total; pending approvals and per-upstream latency are exported', async () => {
    const gw = await startGateway({ upstreams: { http: { url: upstream.url } } });
    gateways.push(gw);
    const alice = new RawMcp(`${gw.url}/mcp/http`, await gw.token('alice', ['eng']));
    await alice.initialize();
    const echo = await alice.post({
      jsonrpc: '2.0',
      id: 1,
      method: 'tools/call',
      params: { name: 'echo', arguments: { message: 'hi' } },
    });
    expect(echo.status).toBe(200);
    const parked = await alice.post({
      jsonrpc: '2.0',
      id: 2,
      method: 'tools/call',
      params: { name: 'get-env', arguments: {} },
    });
    expect(JSON.stringify(parked.messages)).toContain('-32011');
    const m = await metrics(gw);
    expect(m).toContain('gitgate_approvals_pending{upstream="http"} 1');
    expect(m).toMatch(/gitgate_upstream_request_duration_seconds_count\{upstream="http",outcome="ok"\} [1-9]/);
    expect(m).toMatch(
      /# TYPE gitgate_audit_records_appended_total counter\ngitgate_audit_records_appended_total [1-9]/,
    );
    expect(m).toMatch(/# TYPE gitgate_audit_commits_total counter/);
    // No counter hides behind a gauge without _total.
    for (const [, name, type] of m.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
      if (type === 'counter') expect(name).toMatch(/_total$/);
      if (type === 'gauge')
        expect(name, `${name} is a count since start: make it a counter`).not.toMatch(/_appended$|_commits$/);
    }
  });

  it('a route change shuts the replaced stdio child down once its in-flight call ends, not at exit', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'gitgate-hold-'));
    const server = path.join(dir, 'hold-server.mjs');
    writeFileSync(server, HOLD_SERVER);
    const pids = () =>
      readdirSync(dir)
        .filter((f) => f.startsWith('pid-'))
        .map((f) => Number(f.slice(4)));
    const route = (v: string) =>
      `upstreams:\n  stdio:\n    stdio: { command: ${JSON.stringify(process.execPath)}, args: [${JSON.stringify(server)}, ${JSON.stringify(dir)}, ${v}] }\n`;
    const repo = await PolicyRepo.create();
    await repo.write('gitgate.routes.yaml', route('v1')).commit('route v1');
    const gw = await startGateway({
      upstreams: { http: { url: upstream.url } },
      policyRepo: { url: repo.dir, pollSeconds: 3600, routes: { allowStdio: true } },
    });
    gateways.push(gw);
    const token = await gw.token('alice', ['eng']);
    const old = new RawMcp(`${gw.url}/mcp/stdio`, token);
    await old.initialize();
    const [oldPid] = pids();
    expect(oldPid).toBeDefined();
    const held = old.post({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'hold', arguments: {} } });
    await expect.poll(() => existsSync(path.join(dir, `held-${oldPid}`)), { timeout: 20_000 }).toBe(true);

    const v2 = await repo.write('gitgate.routes.yaml', route('v2')).commit('route v2');
    await gw.gw.sync!.sync();
    expect((await ready(gw)).policy.revision).toBe(v2);
    // The call in flight keeps its child; new sessions get the new route's.
    expect(alive(oldPid!)).toBe(true);
    const fresh = new RawMcp(`${gw.url}/mcp/stdio`, token);
    await fresh.initialize();
    expect(pids().filter((p) => p !== oldPid)).toHaveLength(1);

    process.kill(oldPid!, 'SIGUSR2');
    expect(JSON.stringify((await held).messages)).toContain('released');
    // Then the replaced child is stopped (the old code kept it until the gateway closed).
    await expect.poll(() => alive(oldPid!), { timeout: 20_000 }).toBe(false);
    const stale = await old.post({
      jsonrpc: '2.0',
      id: 8,
      method: 'tools/call',
      params: { name: 'echo', arguments: {} },
    });
    expect(stale.status).toBe(404);
    const ok = await fresh.post({
      jsonrpc: '2.0',
      id: 9,
      method: 'tools/call',
      params: { name: 'echo', arguments: {} },
    });
    expect(JSON.stringify(ok.messages)).toContain('"ok"');
  });
});
