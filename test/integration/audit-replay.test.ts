import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// @ts-expect-error plain JS fixture
import { startHttpServer } from '../fixtures/demo-server.mjs';
// What the commands find is tested here, not the process: they run in this process.
import { gitgateInProcess as gitgate } from '../helpers/cli.js';
import { startGateway } from '../helpers/gateway.js';
import { makePolicyDir, TEST_POLICY_DATA } from '../helpers/policy.js';
import { RawMcp } from '../helpers/raw-mcp.js';

describe('gitgate audit replay: one timeline across sessions, with arguments and the approval that released a call', () => {
  let upstream: { url: string; close(): Promise<void> };
  let audit: string;
  let dataDir: string;
  let approvalId: string;

  beforeAll(async () => {
    upstream = await startHttpServer();
    const data = {
      ...TEST_POLICY_DATA,
      upstreams: {
        http: {
          full_access_groups: ['eng'],
          public_tools: ['echo'],
          high_risk_tools: { secret: { approvers: ['eng'], min_approvals: 1, ttl_seconds: 900 } },
          mask: [],
          credential_ttl_seconds: 60,
        },
      },
    };
    const gw = await startGateway({
      upstreams: { http: { url: upstream.url } },
      policyDir: await makePolicyDir(data),
      approvals: { pollSeconds: 3600, local: { teams: { eng: ['alice', 'carol'] } } },
    });
    dataDir = gw.dataDir;
    const alice = new RawMcp(`${gw.url}/mcp/http`, await gw.token('alice', ['eng']));
    const bob = new RawMcp(`${gw.url}/mcp/http`, await gw.token('bob'));
    // Interleaved on purpose: alice, bob, alice. Session ids are random, so file order is not time order.
    await alice.initialize();
    await alice.post({
      jsonrpc: '2.0',
      id: 1,
      method: 'tools/call',
      params: { name: 'echo', arguments: { message: 'alice-first' } },
    });
    await bob.initialize();
    await bob.post({
      jsonrpc: '2.0',
      id: 1,
      method: 'tools/call',
      params: { name: 'echo', arguments: { message: 'bob-second' } },
    });
    const parked = await alice.post({
      jsonrpc: '2.0',
      id: 2,
      method: 'tools/call',
      params: { name: 'secret', arguments: { why: 'audit' } },
    });
    approvalId = String((parked.messages[0] as { error: { data: { approval_id: string } } }).error.data.approval_id);
    const approve = await gitgate([
      'approvals',
      'approve',
      approvalId,
      '--token',
      await gw.token('carol'),
      '--data-dir',
      dataDir,
    ]);
    expect(approve.code, approve.stderr).toBe(0);
    await gw.gw.approvals.poll();
    const released = await alice.post({
      jsonrpc: '2.0',
      id: 3,
      method: 'tools/call',
      params: { name: 'secret', arguments: { why: 'audit' } },
    });
    expect(JSON.stringify(released.messages)).not.toContain('"error"');
    await gw.close();
    audit = path.join(dataDir, 'audit');
  });
  afterAll(async () => {
    await upstream.close();
  });

  it('orders by time across sessions, shows arguments, and names the approval and its approver', async () => {
    const r = await gitgate(['audit', 'replay', audit]);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.split('\n');
    const at = (needle: string) => lines.findIndex((l) => l.includes(needle));
    const first = at('args {"message":"alice-first"}');
    const second = at('args {"message":"bob-second"}');
    const parked = at('args {"why":"audit"}');
    expect(first).toBeGreaterThan(-1);
    expect(second).toBeGreaterThan(first);
    expect(parked).toBeGreaterThan(second);
    // Timestamps never go backwards.
    const ts = lines
      .map((l) => /^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)/.exec(l)?.[1])
      .filter((t): t is string => t !== undefined);
    expect(ts).toEqual([...ts].sort());
    expect(r.stdout).toContain(`released by approval ${approvalId} (approved by carol`);
    expect(lines.filter((l) => l.includes('approval.approved')).join('\n')).toContain('carol');

    const json = await gitgate(['audit', 'replay', audit, '--json', '--caller', 'alice']);
    const recs = json.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { ts: string; caller?: { sub: string } });
    expect(recs.every((x) => x.caller?.sub === 'alice')).toBe(true);
    expect(recs.map((x) => x.ts)).toEqual(recs.map((x) => x.ts).sort());
  });

  it('a path that is not an audit repo says so', async () => {
    const r = await gitgate(['audit', 'replay', dataDir]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('is not an audit repo (no streams/ folder)');
  });
});
