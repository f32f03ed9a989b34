import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { readRecords } from '../../src/audit/read.js';
import { listFiles } from '../../src/audit/verify.js';
// @ts-expect-error plain JS fixture
import { startHttpServer } from '../fixtures/demo-server.mjs';
import { gitgate, gitgateInProcess } from '../helpers/cli.js';
import { startGateway } from '../helpers/gateway.js';
import { GitHubEmulator } from '../helpers/github-emulator.js';
import { TEST_POLICY_DATA } from '../helpers/policy.js';
import { PolicyRepo } from '../helpers/policy-repo.js';

const data = (publicTools: string[], highRisk: Record<string, unknown>) => ({
  ...TEST_POLICY_DATA,
  upstreams: {
    http: {
      full_access_groups: ['eng'],
      public_tools: publicTools,
      high_risk_tools: highRisk,
      mask: [],
      credential_ttl_seconds: 60,
    },
  },
});
const SECRET_APPROVAL = { secret: { approvers: ['eng'], min_approvals: 1, ttl_seconds: 900 } };

describe('policy impact: recorded traffic replayed on two revisions', () => {
  let repo: PolicyRepo;
  let base: string;
  let head: string;
  let audit: string;
  let decisions: number;
  let records: number;
  let days: number;
  let streams: number;

  beforeAll(async () => {
    // Base: echo and add are public, secret is high risk. Head: echo is no longer public,
    // secret becomes public and nothing needs approval.
    repo = await PolicyRepo.create(data(['echo', 'add'], SECRET_APPROVAL));
    base = (await repo.commit('base')).slice(0, 12);
    const upstream = await startHttpServer();
    const gw = await startGateway({
      upstreams: { http: { url: upstream.url } },
      policyDir: path.join(repo.dir, 'policies'),
    });
    const call = async (who: string, groups: string[], name: string, args: Record<string, unknown>) => {
      const token = await gw.token(who, groups);
      const h = {
        authorization: `Bearer ${token}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
      };
      const init = await fetch(`${gw.url}/mcp/http`, {
        method: 'POST',
        headers: h,
        body: JSON.stringify({
          jsonrpc: '2.0',
          id: 0,
          method: 'initialize',
          params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'i', version: '1' } },
        }),
      });
      await init.text();
      const sid = init.headers.get('mcp-session-id')!;
      const r = await fetch(`${gw.url}/mcp/http`, {
        method: 'POST',
        headers: { ...h, 'mcp-session-id': sid },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name, arguments: args } }),
      });
      await r.text();
    };
    for (let i = 0; i < 3; i++) await call('bob', [], 'echo', { message: `m${i}` });
    for (let i = 0; i < 2; i++) await call('bob', [], 'add', { a: i, b: 1 });
    for (let i = 0; i < 2; i++) await call('bob', [], 'secret', { try: i });
    await call('alice', ['eng'], 'secret', {});
    await gw.close();
    await upstream.close();
    audit = path.join(gw.dataDir, 'audit');
    decisions = 0;
    records = 0;
    const dates = new Set<string>();
    const inStreams = new Set<string>();
    for await (const r of readRecords(audit)) {
      records++;
      if (r.type !== 'decision') continue;
      decisions++;
      dates.add(r.ts.slice(0, 10));
      inStreams.add(r.stream);
    }
    days = dates.size;
    streams = inStreams.size;
    expect(decisions).toBe(16); // 8 initialize + 8 tools/call
    expect(streams).toBe(9); // one session each, and the gateway's stream where initialize decisions land (durable before the session exists)
    head = (
      await repo
        .write('policies/config/data.json', JSON.stringify(data(['add', 'secret'], {})))
        .commit('loosen secret, tighten echo')
    ).slice(0, 12);
  });

  const impactArgs = (args: string[]) => [
    'policy',
    'impact',
    '--repo',
    repo.dir,
    '--base',
    base,
    '--head',
    head,
    '--audit',
    audit,
    ...args,
  ];
  // In this process: the tests are about the report and the exit code, not the process (the first runs the built CLI).
  const impact = (args: string[], env?: NodeJS.ProcessEnv) => gitgateInProcess(impactArgs(args), env ? { env } : {});

  it('counts exactly the decisions that flip, by transition, with callers, tools and examples, and says what it covered', async () => {
    const r = await gitgate(impactArgs(['--format', 'json', '--ack']));
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout) as {
      records: number;
      decisions: number;
      streams: number;
      days: number;
      replayed: number;
      skipped: number;
      transitions: Record<string, number>;
      high_risk: Record<string, number>;
      top: Record<string, { callers: [string, number][]; tools: [string, number][] }>;
      examples: { transition: string; caller: string; tool?: string }[];
    };
    expect(j.replayed).toBe(decisions);
    expect({ records: j.records, decisions: j.decisions, streams: j.streams, days: j.days }).toEqual({
      records,
      decisions,
      streams,
      days,
    });
    expect(r.stderr).toContain(
      `replayed ${decisions} decision(s): ${records} audit record(s) read, ${decisions} decision(s) in the window, from ${streams} stream(s) over ${days} day(s)`,
    );
    expect(j.skipped).toBe(0);
    expect(j.transitions).toEqual({ 'allow->deny': 3, 'deny->allow': 2, 'approval->allow': 1 });
    expect(j.high_risk).toEqual({ 'deny->allow': 2, 'approval->allow': 1 });
    expect(j.top['allow->deny']).toEqual({ callers: [['bob', 3]], tools: [['echo', 3]] });
    expect(j.top['deny->allow']).toEqual({ callers: [['bob', 2]], tools: [['secret', 2]] });
    expect(j.examples.filter((e) => e.transition === 'allow->deny')).toHaveLength(3);
    expect(j.examples.find((e) => e.transition === 'approval->allow')).toMatchObject({
      caller: 'alice',
      tool: 'secret',
    });
  });

  it('by default, removing an approval requirement (approval->allow) fails the check like loosening a high-risk deny', async () => {
    const r = await impact(['--format', 'json']);
    expect(r.code, r.stdout).toBe(2);
    const j = JSON.parse(r.stdout) as { guards: string[]; guard_hits: { guard: string; count: number }[] };
    expect(j.guards).toEqual(['deny->allow:high', 'approval->allow']);
    expect(j.guard_hits).toEqual([
      { guard: 'deny->allow:high', count: 2 },
      { guard: 'approval->allow', count: 1 },
    ]);
    const md = await impact([]);
    expect(md.stdout).toContain('❌ **guard hit**: 1 decision(s) approval->allow.');
    expect((await impact(['--guard', 'none'])).code).toBe(0);
  });

  it('replaying nothing fails unless --allow-empty, and says why and what to do', async () => {
    const missing = path.join(tmpdir(), 'gitgate-no-such-audit-repo');
    const gone = await gitgateInProcess([
      'policy',
      'impact',
      '--repo',
      repo.dir,
      '--base',
      base,
      '--head',
      head,
      '--audit',
      missing,
    ]);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toContain(`audit repo ${missing} not found: clone the gateway's audit repo`);
    expect(gone.stderr).toContain('--allow-empty');
    expect(
      (
        await gitgateInProcess([
          'policy',
          'impact',
          '--repo',
          repo.dir,
          '--base',
          base,
          '--head',
          head,
          '--audit',
          missing,
          '--allow-empty',
        ])
      ).code,
    ).toBe(0);

    const empty = mkdtempSync(path.join(tmpdir(), 'gitgate-empty-audit-'));
    const none = await gitgateInProcess([
      'policy',
      'impact',
      '--repo',
      repo.dir,
      '--base',
      base,
      '--head',
      head,
      '--audit',
      empty,
    ]);
    expect(none.code).toBe(1);
    expect(none.stdout).toContain('Replayed **0**');
    expect(none.stdout).toContain('⚠️ **Nothing was replayed**');
    expect(none.stderr).toContain('holds no records');

    // Records, but no decision in the window.
    const later = await impact(['--since', '2999-01-01']);
    expect(later.code).toBe(1);
    expect(later.stderr).toMatch(/none of the \d+ record\(s\) in .* is a decision since 2999-01-01 \(widen --since\)/);
    expect((await impact(['--since', '2999-01-01', '--allow-empty'])).code).toBe(0);
  });

  it('markdown for humans; a guard fails the check until acknowledged', async () => {
    const hit = await impact(['--guard', 'deny->allow:high']);
    expect(hit.code, hit.stderr).toBe(2);
    expect(hit.stdout).toContain('| deny → allow | 2 | 2 | bob (2) | secret (2) |');
    expect(hit.stdout).toContain('❌ **guard hit**: 2 decision(s) deny->allow on risk: high calls');
    const acked = await impact(['--guard', 'deny->allow:high', '--ack']);
    expect(acked.code, acked.stderr).toBe(0);
    expect(acked.stdout).toContain('✅ acknowledged');
    expect(hit.stdout).toMatch(
      /Covered: \d+ audit record\(s\) read, 16 decision\(s\) in the window, from 9 stream\(s\) over \d+ day\(s\)/,
    );
    const fine = await impact(['--guard', 'allow->approval']);
    expect(fine.code, fine.stderr).toBe(0);
  });

  it('skips and counts records the log does not vouch for (an edited record; with the tree broken, what only the signed tree vouched for)', async () => {
    const copy = path.join(mkdtempSync(path.join(tmpdir(), 'gitgate-impact-audit-')), 'audit');
    cpSync(audit, copy, { recursive: true });
    const file = listFiles(path.join(copy, 'streams'), '.jsonl').find((f) =>
      readFileSync(f, 'utf8').includes('"tool":"echo"'),
    )!;
    writeFileSync(file, readFileSync(file, 'utf8').replace('"message":"m', '"message":"M'));
    const r = await gitgateInProcess([
      'policy',
      'impact',
      '--repo',
      repo.dir,
      '--base',
      base,
      '--head',
      head,
      '--audit',
      copy,
      '--format',
      'json',
      '--ack',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout) as {
      replayed: number;
      skipped: number;
      skipped_why: Record<string, number>;
      transitions: Record<string, number>;
    };
    // The edited decision: the record after it names another leaf hash as its prev.
    expect(j.skipped_why['the chain is broken']).toBe(1);
    expect(j.skipped).toBeGreaterThanOrEqual(1);
    expect(j.replayed + j.skipped).toBe(decisions);
    expect(j.transitions['allow->deny']).toBe(2);
  });

  it('posts one PR comment and updates it on the next run (GitHub emulated, checked against its OpenAPI description)', async () => {
    const gh = await new GitHubEmulator('acme', 'policies').start();
    try {
      const env = { GITHUB_TOKEN: 'ghs_ci', GITHUB_REPOSITORY: 'acme/policies', GITHUB_API_URL: gh.url };
      const first = await impact(['--github-comment', '--pr', '7', '--ack'], env);
      expect(first.code, first.stderr).toBe(0);
      expect(first.stderr).toContain('impact comment created on acme/policies#7');
      const second = await impact(['--github-comment', '--pr', '7', '--since', '1h', '--ack'], env);
      expect(second.stderr).toContain('impact comment updated on acme/policies#7');
      const mine = gh.comments.filter((c) => c.issue === 7);
      expect(mine).toHaveLength(1);
      expect(mine[0]!.body).toContain('since 1h');
      expect(mine[0]!.body).toContain('<!-- gitgate:policy-impact -->');
      expect(gh.violations).toEqual([]);
    } finally {
      await gh.close();
    }
  });
});
