import { createHash } from 'node:crypto';
import { chmodSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { McpError } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readRecords } from '../../src/audit/read.js';
import type { AuditRecord } from '../../src/audit/record.js';
import { FileWal } from '../../src/audit/wal.js';
// @ts-expect-error plain JS fixture
import { startHttpServer } from '../fixtures/demo-server.mjs';
import { verifyRepo } from '../helpers/audit-repo.js';
// What the commands find is tested here, not the process: they run in this process.
import { gitgateInProcess as gitgate } from '../helpers/cli.js';
import { connectClient } from '../helpers/client.js';
import { ManualClock } from '../helpers/clock.js';
import { FlakyWal } from '../helpers/flaky-wal.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';

interface Upstream {
  url: string;
  received: { message: { method?: string; params?: { name?: string } } }[];
  credentials: { token: string }[];
  close(): Promise<void>;
}

function allFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.name === '.git' ? [] : e.isDirectory() ? allFiles(path.join(dir, e.name)) : [path.join(dir, e.name)],
  );
}

describe('every exchange through the gateway is recorded, signed and committed', () => {
  let upstream: Upstream;
  let gw: TestGateway;
  const verify = { jwksUrl: '', issuer: 'urn:gitgate', audience: '' };

  beforeAll(async () => {
    process.env.GITGATE_AUDIT_TEST_KEY = 'sk-audit-must-never-see-this';
    upstream = await startHttpServer(verify);
    verify.audience = upstream.url;
    gw = await startGateway({
      upstreams: { http: { url: upstream.url, secret: { header: 'x-api-key', fromEnv: 'GITGATE_AUDIT_TEST_KEY' } } },
      audit: { commitEveryMs: 100 },
    });
    verify.jwksUrl = `${gw.url}/.well-known/jwks.json`;
  });
  afterAll(async () => {
    await gw.close().catch(() => undefined);
    await upstream.close();
  });

  it('records a session with allowed and denied calls; verify passes and replay shows it', async () => {
    const token = await gw.token('bob');
    const c = await connectClient(`${gw.url}/mcp/http`, token);
    const sid = c.transport.sessionId!;
    await c.client.callTool({ name: 'echo', arguments: { message: 'hello jane@example.com' } });
    const err = (await c.client.callTool({ name: 'secret', arguments: {} }).catch((e: unknown) => e)) as McpError;
    expect(err.code).toBe(-32010);
    await c.close();
    await gw.close();

    const repo = path.join(gw.dataDir, 'audit');
    const report = await verifyRepo(repo);
    expect(report).toMatchObject({ ok: true });
    // What an auditor keeps: the log's verifier key and its last checkpoint, signed on shutdown, also committed.
    const key = await gitgate(['audit', 'public-key', '--data-dir', gw.dataDir]);
    expect(key.stdout).toBe(readFileSync(path.join(repo, 'log.pub'), 'utf8'));
    const cp = await gitgate(['audit', 'checkpoint', '--data-dir', gw.dataDir]);
    expect(cp.stdout).toBe(readFileSync(path.join(repo, 'checkpoint'), 'utf8'));
    expect(cp.stdout.split('\n')[1]).toBe(String(report.records));
    const records: AuditRecord[] = [];
    for await (const r of readRecords(repo, { session: sid })) records.push(r);
    expect(records.map((r) => `${r.type} ${r.method ?? ''} ${r.tool ?? ''}`.trim())).toEqual([
      'session.open initialize',
      'response initialize',
      // Client notifications and the GET stream the SDK client opens are decided and recorded too.
      'decision notifications/initialized',
      'decision subscriptions/listen',
      'decision tools/call echo',
      'response tools/call echo',
      'decision tools/call secret',
      'error tools/call secret',
      'session.close',
    ]);
    expect(records.map((r) => r.seq)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8]);
    // initialize's decision was durable before the upstream saw the call, when the session did not exist yet:
    // it is in the gateway's stream, under the exchange that opened the session.
    const all: AuditRecord[] = [];
    for await (const r of readRecords(repo)) all.push(r);
    const opened = records.find((r) => r.type === 'session.open')!;
    const initDecision = all.find((r) => r.type === 'decision' && r.exchange === opened.exchange)!;
    expect(initDecision).toMatchObject({ method: 'initialize', data: { allow: true } });
    expect(initDecision.stream).toMatch(/^gateway\//);
    const denied = records.find((r) => r.type === 'decision' && r.tool === 'secret')!;
    expect(denied.data).toMatchObject({
      allow: false,
      reasons: [expect.stringContaining('tools/call of secret denied')],
      input: { mcp: { tool: 'secret' } },
    });
    // The hash is of the bytes the policy evaluated; unmasked, the recorded input serializes to exactly them.
    const { input_sha256: inputHash, input: recordedInput } = denied.data as { input_sha256: string; input: unknown };
    expect(inputHash).toBe(createHash('sha256').update(JSON.stringify(recordedInput)).digest('hex'));
    // The recorded response is what the client saw: masked.
    const echoed = records.find((r) => r.type === 'response' && r.tool === 'echo')!;
    expect(JSON.stringify(echoed.data)).toContain('[redacted:email]');
    expect(records.every((r) => r.caller?.sub === 'bob')).toBe(true);

    // Nothing secret reaches the audit repo: not the client token, the credentials, or the upstream's API key.
    const everything = allFiles(repo)
      .map((f) => readFileSync(f, 'utf8'))
      .join('\n');
    expect(everything).not.toContain(token);
    expect(everything).not.toContain('sk-audit-must-never-see-this');
    for (const cred of upstream.credentials) expect(everything).not.toContain(cred.token);

    const replay = await gitgate(['audit', 'replay', repo, '--session', sid]);
    expect(replay.code).toBe(0);
    expect(replay.stdout).toMatch(
      /decision\s+bob\s+tools\/call secret\s+DENY\s+args \{\}\s+tools\/call of secret denied/,
    );
    expect(replay.stdout).toMatch(/response\s+bob\s+tools\/call echo\s+ok/);
    const json = await gitgate(['audit', 'replay', repo, '--caller', 'bob', '--json']);
    expect(
      json.stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l).caller.sub),
    ).toEqual(expect.arrayContaining(['bob']));
    const exported = await gitgate(['audit', 'export', repo, '--since', '1h']);
    expect(exported.stdout.trim().split('\n').length).toBeGreaterThanOrEqual(records.length);
  });
});

describe('the gateway fails closed when it cannot record', () => {
  it('a WAL that cannot be written: no answer without its record, nothing forwarded, /readyz says why', async () => {
    const upstream = (await startHttpServer()) as Upstream;
    let wal!: FlakyWal;
    // The audit trail's clock moves by hand: the retry window after a failure passes without waiting for it.
    const clock = new ManualClock(Date.now());
    const gw2 = await startGateway({
      upstreams: { http: { url: upstream.url } },
      options: { wal: (dir) => (wal = new FlakyWal(new FileWal(dir))), auditClock: clock },
    });
    try {
      const c = await connectClient(`${gw2.url}/mcp/http`, await gw2.token('bob'));
      await c.client.callTool({ name: 'echo', arguments: { message: 'recorded' } });
      wal.failing = true;
      const before = upstream.received.filter((r) => r.message.method === 'tools/call').length;
      const err = (await c.client
        .callTool({ name: 'echo', arguments: { message: 'not recorded' } })
        .catch((e: unknown) => e)) as Error;
      expect(String(err)).toMatch(/Audit log unavailable: ENOSPC/);
      // The next request is refused before it reaches the upstream.
      const res = await fetch(`${gw2.url}/mcp/http`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${await gw2.token('bob')}`,
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          'mcp-session-id': c.transport.sessionId!,
        },
        body: JSON.stringify({
          jsonrpc: '2.0',
          id: 5,
          method: 'tools/call',
          params: { name: 'echo', arguments: { message: 'refused' } },
        }),
      });
      expect(res.status).toBe(503);
      expect(((await res.json()) as { error: { code: number } }).error.code).toBe(-32018);
      expect(
        upstream.received.filter((r) => r.message.method === 'tools/call' && r.message.params?.name === 'echo').length -
          before,
      ).toBeLessThanOrEqual(1);
      expect(upstream.received.some((r) => JSON.stringify(r.message).includes('refused'))).toBe(false);
      const ready = await fetch(`${gw2.url}/readyz`);
      expect(ready.status).toBe(503);
      expect(((await ready.json()) as { problems: string[] }).problems.join()).toMatch(/audit log unavailable: ENOSPC/);
      const metrics = await (await fetch(`${gw2.url}/metrics`)).text();
      expect(metrics).toMatch(/gitgate_audit_healthy 0/);
      // Disk space comes back: the gateway serves again.
      wal.failing = false;
      clock.advance(2_000);
      expect((await c.client.callTool({ name: 'echo', arguments: { message: 'back' } })).content).toEqual([
        { type: 'text', text: 'echo: back' },
      ]);
      // Each durable WAL write was timed (the failed ones are not).
      const after = await (await fetch(`${gw2.url}/metrics`)).text();
      const writes = Number(/^gitgate_audit_wal_writes_total (\d+)$/m.exec(after)?.[1]);
      expect(writes).toBeGreaterThan(0);
      expect(Number(/^gitgate_audit_wal_write_seconds_count (\d+)$/m.exec(after)?.[1])).toBe(writes);
      await c.close();
    } finally {
      await gw2.close();
      await upstream.close();
    }
    const report = await verifyRepo(path.join(gw2.dataDir, 'audit'));
    expect(report.ok).toBe(true);
  });

  it('an audit repo that refuses commits keeps records in the WAL and commits them once it can', async () => {
    const upstream = (await startHttpServer()) as Upstream;
    const gw = await startGateway({ upstreams: { http: { url: upstream.url } }, audit: { commitEveryMs: 100 } });
    const repo = path.join(gw.dataDir, 'audit');
    const hook = path.join(repo, '.git', 'hooks', 'pre-commit');
    try {
      writeFileSync(hook, '#!/bin/sh\necho "repository is read-only" >&2\nexit 1\n');
      chmodSync(hook, 0o755);
      const c = await connectClient(`${gw.url}/mcp/http`, await gw.token('bob'));
      for (let i = 0; i < 5; i++) await c.client.callTool({ name: 'echo', arguments: { message: `m${i}` } });
      // A commit is tried (and refused by the hook): wait for it to say so.
      const readyz = async () =>
        (await (await fetch(`${gw.url}/readyz`)).json()) as { audit: { uncommitted: number; lastError?: string } };
      await expect.poll(async () => (await readyz()).audit.lastError, { timeout: 5000 }).toBeDefined();
      const ready = await readyz();
      expect(ready.audit.uncommitted).toBeGreaterThanOrEqual(10);
      expect(ready.audit.lastError).toMatch(/read-only|pre-commit|hook/);
      expect(readdirSync(path.join(gw.dataDir, 'audit-wal')).length).toBeGreaterThan(0);
      rmSync(hook);
      await expect
        .poll(
          async () =>
            ((await (await fetch(`${gw.url}/readyz`)).json()) as { audit: { uncommitted: number } }).audit.uncommitted,
          { timeout: 5000 },
        )
        .toBe(0);
      await c.close();
    } finally {
      await gw.close();
      await upstream.close();
    }
    const report = await verifyRepo(repo);
    expect(report.ok).toBe(true);
    expect(report.records).toBeGreaterThanOrEqual(12);
  });
});
