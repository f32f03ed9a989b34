/**
 * The audit trail can miss or bend what happened: each case an attacker (or an
 * accident: a crash, a clock, a second process) could use, shown against real
 * parts: real gateways, real WAL files, real git repos in temp folders.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { appendFileSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ApprovalProvider } from '../../src/approvals/provider.js';
import type { ApprovalRecord } from '../../src/approvals/types.js';
import { createAuditor } from '../../src/audit/auditor.js';
import { readRecords } from '../../src/audit/read.js';
import { type AuditRecord, leafHashHex, recordParts, recordText } from '../../src/audit/record.js';
import { systemClock } from '../../src/clock.js';
import { gitText } from '../../src/git/run.js';

const parseLine = (line: string) => ({ record: JSON.parse(line) as AuditRecord });

import { GitAuditStore, streamFile } from '../../src/audit/store.js';
import type { Identity } from '../../src/identity/identity.js';
import { compileMask } from '../../src/masking/mask.js';
import type { JsonRpcMessage, JsonRpcRequest } from '../../src/mcp/jsonrpc.js';
import type { UpstreamConnector } from '../../src/mcp/upstream/types.js';
import { packageRoot } from '../../src/paths.js';
import type { DecisionOutcome } from '../../src/policy/decide.js';
import type { PolicyInput } from '../../src/policy/input.js';
import { decisionEvent, newAuditKey, openTrail, verifyRepo } from '../helpers/audit-repo.js';
import { durableWalRecords } from '../helpers/audit-wal.js';
import { fakeUpstream } from '../helpers/fake-upstream.js';
import { startGateway } from '../helpers/gateway.js';

const HEADERS = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };

async function post(
  url: string,
  token: string,
  body: unknown,
  sid?: string,
): Promise<{
  status: number;
  sid: string | null;
  json: { result?: unknown; error?: { code: number; data?: Record<string, unknown> } } | undefined;
}> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { ...HEADERS, authorization: `Bearer ${token}`, ...(sid ? { 'mcp-session-id': sid } : {}) },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return {
    status: res.status,
    sid: res.headers.get('mcp-session-id'),
    json: text === '' ? undefined : (JSON.parse(text) as never),
  };
}

/** What is durable in the WAL under `dataDir` right now (read from disk). */
function walRecords(dataDir: string): AuditRecord[] {
  return durableWalRecords<AuditRecord>(path.join(dataDir, 'audit-wal'));
}

/** An in-memory upstream that runs `check` when each request (and `checkSend` when each client notification or answer) reaches it. */
const checkingUpstream = (
  name: string,
  check: (msg: JsonRpcRequest) => void,
  checkSend?: (msg: JsonRpcMessage) => void,
): UpstreamConnector => fakeUpstream({ name }, [], check, checkSend);

describe('what a forward rests on is durable before the upstream sees it', () => {
  it('initialize, a client notification, an allowed call, and a parked call (requested before it is opened, executed before it goes)', async () => {
    const seen: string[] = [];
    let dataDir = '';
    const decisions = (method: string, tool?: string) =>
      walRecords(dataDir).filter(
        (r) =>
          r.type === 'decision' &&
          r.method === method &&
          r.tool === tool &&
          (r.data as { allow?: boolean }).allow === true,
      ).length;
    const opened: { id: string; ref: string }[] = [];
    let approved = false;
    const provider: ApprovalProvider = {
      kind: 'local',
      async open(a: ApprovalRecord) {
        const records = walRecords(dataDir);
        seen.push(
          `open ${a.call.tool}: decisions ${decisions('tools/call', a.call.tool)}, requested ${records.filter((r) => r.type === 'approval.requested' && (r.data as { approval_id?: string }).approval_id === a.id).length}`,
        );
        opened.push({ id: a.id, ref: `review-${a.id}` });
        return { ref: `review-${a.id}`, url: `https://reviews.example/${a.id}`, headSha: 'h1' };
      },
      // The reviewer's approval exists once `approved` is set: the service reads it from here, as from GitHub.
      state: async () => ({
        head: 'h1',
        state: 'open',
        reviews: approved ? [{ login: 'reviewer', state: 'approved', commit: 'h1', body: '' }] : [],
      }),
      isEligible: async () => true,
      finish: async () => undefined,
    };
    const gw = await startGateway({
      upstreams: { http: { url: 'http://127.0.0.1:9/unused' } },
      audit: { commitEveryMs: 600_000, commitEveryRecords: 1_000_000 },
      options: {
        approvalProvider: provider,
        connectUpstream: (cfg) =>
          checkingUpstream(
            cfg.name,
            (msg) => {
              const tool = (msg.params as { name?: string } | undefined)?.name;
              const executed = walRecords(dataDir).filter((r) => r.type === 'approval.executed').length;
              seen.push(
                `${msg.method}${tool ? ` ${tool}` : ''}: decisions ${decisions(msg.method, msg.method === 'tools/call' ? tool : undefined)}, executed ${executed}`,
              );
            },
            // A client notification is forwarded on its own decision: durable before it leaves too.
            (msg) => {
              if ('method' in msg) seen.push(`${msg.method}: decisions ${decisions(msg.method)}`);
            },
          ),
      },
    });
    dataDir = gw.dataDir;
    try {
      const url = `${gw.url}/mcp/http`;
      const token = await gw.token('alice', ['eng']);
      const init = await post(url, token, {
        jsonrpc: '2.0',
        id: 0,
        method: 'initialize',
        params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 't', version: '1' } },
      });
      const sid = init.sid!;
      await post(url, token, { jsonrpc: '2.0', method: 'notifications/initialized' }, sid);
      expect(
        (
          await post(
            url,
            token,
            { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'echo', arguments: { message: 'm1' } } },
            sid,
          )
        ).status,
      ).toBe(200);
      const parked = await post(
        url,
        token,
        { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'get-env', arguments: {} } },
        sid,
      );
      expect(parked.json?.error?.code).toBe(-32011);
      expect(opened).toHaveLength(1);
      approved = true;
      await gw.gw.approvals.refresh(opened[0]!.ref);
      const released = await post(
        url,
        token,
        { jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'get-env', arguments: {} } },
        sid,
      );
      expect(released.json?.result).toBeDefined();
    } finally {
      await gw.close();
    }
    expect(seen).toEqual([
      'initialize: decisions 1, executed 0',
      'notifications/initialized: decisions 1',
      'tools/call echo: decisions 1, executed 0',
      'open get-env: decisions 1, requested 1',
      // The retry's decision and the approval's executed record, both durable before the call runs.
      'tools/call get-env: decisions 2, executed 1',
    ]);
  });
});

describe('errors before the exchange has a stream', () => {
  it('a refusal before the caller or the session is known is recorded in the gateway stream', async () => {
    const gw = await startGateway({
      upstreams: { http: { url: 'http://127.0.0.1:9/unused' } },
      options: { connectUpstream: (cfg) => checkingUpstream(cfg.name, () => undefined) },
    });
    const url = `${gw.url}/mcp/http`;
    try {
      expect((await fetch(url, { method: 'POST', headers: HEADERS, body: '{}' })).status).toBe(401);
      const token = await gw.token('bob');
      expect((await post(url, token, '{"jsonrpc":"2.0","id":1,')).status).toBe(400);
      expect(
        (
          await post(
            url,
            token,
            { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'echo', arguments: {} } },
            'no-such-session',
          )
        ).status,
      ).toBe(404);
    } finally {
      await gw.close();
    }
    const errors: string[] = [];
    for await (const r of readRecords(path.join(gw.dataDir, 'audit')))
      if (r.type === 'error')
        errors.push(`${r.stream.split('/')[0]} ${(r.data as { code: string }).code} ${r.caller?.sub ?? '-'}`);
    expect(errors.sort()).toEqual([
      'gateway AUTH_REQUIRED -',
      'gateway PARSE_ERROR bob',
      'gateway SESSION_UNKNOWN bob',
    ]);
  });
});

describe('records that outlive their stream state', () => {
  it('a record appended to a stream after it was forgotten (a call still in flight when its session closed) continues its seq', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'gitgate-forget-'));
    const t = await openTrail(root);
    await t.log.append('sessions/s1', decisionEvent('in-flight'));
    // The session closes (DELETE, idle expiry) before anything was committed…
    await t.log.append('sessions/s1', {
      type: 'session.close',
      session: 's1',
      data: { reason: 'closed by the client (DELETE)' },
    });
    t.log.forget('sessions/s1');
    // …and the call that was in flight answers afterwards.
    await t.log.append('sessions/s1', {
      ...decisionEvent('answered-late'),
      type: 'error',
      data: {
        code: 'UPSTREAM_UNAVAILABLE',
        http_status: 502,
        rpc_code: -32014,
        message: 'session closed',
        id: 1,
        ms: 1,
      },
    });
    await t.committer.commit();
    await t.log.close();
    const lines = readFileSync(streamFile(path.join(root, 'audit'), 'sessions/s1'), 'utf8')
      .trim()
      .split('\n');
    expect(lines.map((l) => `${parseLine(l).record.seq} ${parseLine(l).record.type}`)).toEqual([
      '0 decision',
      '1 session.close',
      '2 error',
    ]);
    expect(t.committer.status().lastError).toBeUndefined();
    expect((await verifyRepo(path.join(root, 'audit'))).error).toBeUndefined();
  });
});

describe('a long last line', () => {
  it('a stream whose last line is over 64 KiB of multi-byte text continues its chain after a restart', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'gitgate-bigline-'));
    const first = await openTrail(root);
    // A caller controls this payload: arguments of 2- and 3-byte characters, about 100 KB; shifted
    // by 0–4 bytes so that a character straddles every 64 KiB boundary a reader might cut at.
    const shifts = [0, 1, 2, 3, 4];
    for (const shift of shifts) {
      await first.log.append(`s${shift}`, decisionEvent('small'));
      const event = decisionEvent('big');
      const input = event.data!.input as PolicyInput;
      await first.log.append(`s${shift}`, {
        ...event,
        data: {
          ...event.data,
          input: { ...input, mcp: { ...input.mcp, arguments: { note: 'é✓'.repeat(20_000) + 'x'.repeat(shift) } } },
        },
      });
    }
    await first.committer.commit();
    await first.log.close();
    const second = await openTrail(root, first.key);
    await second.committer.recover();
    for (const shift of shifts) await second.log.append(`s${shift}`, decisionEvent('after-restart'));
    await second.committer.commit();
    await second.log.close();
    const report = await verifyRepo(path.join(root, 'audit'));
    expect(report.error).toBeUndefined();
    expect(report.records).toBe(3 * shifts.length);
  });
});

describe('records whose JSON holds line and field separators', () => {
  it('U+2028, U+2029, tabs, newlines, CR, NUL and lone surrogates come back exactly, through the WAL, recovery, the repo, verify and read', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'gitgate-chars-'));
    const nasty = 'a\u2028b\u2029c\td\ne\rf\u0000g\ud800h\udfffi\u0085j\u000bk\u000cl"m\\n';
    const first = await openTrail(root);
    const event = decisionEvent('x0');
    const recorded = {
      ...(event.data!.input as PolicyInput),
      mcp: { ...(event.data!.input as PolicyInput).mcp, arguments: { [nasty]: nasty } },
    };
    await first.log.append('s1', { ...event, data: { ...event.data, input: recorded } });
    await first.log.append('s1', decisionEvent('x1'));
    await first.log.close(); // durable in the WAL only: recovery reads it back
    const second = await openTrail(root, first.key);
    expect((await second.committer.recover()).damage).toEqual([]);
    await second.log.close();
    const repo = path.join(root, 'audit');
    expect((await verifyRepo(repo)).error).toBeUndefined();
    const records: AuditRecord[] = [];
    for await (const r of readRecords(repo)) records.push(r);
    expect(records.map((r) => r.exchange)).toEqual(['x0', 'x1']);
    expect((records[0]!.data as { input: unknown }).input).toEqual(recorded);
  });
});

describe('a clock that goes back', () => {
  it('never makes a record older than the one before it in its stream, also across a restart', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'gitgate-clock-'));
    const k = newAuditKey('k1');
    // The clock steps back an hour between two records, and again after the restart.
    const times = ['2030-01-01T10:00:00.000Z', '2030-01-01T09:00:00.000Z', '2030-01-01T08:00:00.000Z'];
    let t = 0;
    const clock = { ...systemClock, now: () => Date.parse(times[Math.min(t, times.length - 1)]!) };
    const first = await openTrail(root, k, { clock });
    const auditor = createAuditor(first.log, { maxRecordedBytes: 65536, clock });
    const x = auditor.begin('x1');
    x.caller({ sub: 'ann', groups: [], issuer: 'urn:test' } as unknown as Identity, 'demo');
    x.bind({ stateless: 'demo' });
    x.asked(input);
    await x.decided(allowed, request).durable();
    t = 1;
    await x.answered({ jsonrpc: '2.0', id: 1, result: {} }, 0);
    await first.log.append('s1', decisionEvent('a'));
    await first.committer.commit();
    await first.log.close();
    t = 2;
    const second = await openTrail(root, k, { clock });
    await second.committer.recover();
    await second.log.append('s1', decisionEvent('b'));
    await second.committer.commit();
    await second.log.close();
    const byStream = new Map<string, string[]>();
    for await (const r of readRecords(path.join(root, 'audit')))
      byStream.set(r.stream, [...(byStream.get(r.stream) ?? []), r.ts]);
    for (const [stream, ts] of byStream) expect({ stream, ts }).toEqual({ stream, ts: [...ts].sort() });
    expect(byStream.get('s1')).toEqual([times[1], times[1]]);
  });
});

describe('the WAL does not decide what the repo already holds', () => {
  it('a WAL entry that rewrites a stored record (a fork), or names no stream file, stops the start; the WAL and the repo stay as they were', async () => {
    for (const [name, forged] of [
      [
        'fork',
        (_k: ReturnType<typeof newAuditKey>, prev: string | null) => ({
          stream: 's1',
          line: recordText(recordParts('s1', 2, '2030-01-01T00:00:00.000Z', decisionEvent('forged')), prev, 2),
        }),
      ],
      [
        'escape',
        (_k: ReturnType<typeof newAuditKey>) => ({
          stream: '../../outside',
          line: recordText(
            recordParts('../../outside', 0, '2030-01-01T00:00:00.000Z', decisionEvent('forged')),
            null,
            3,
          ),
        }),
      ],
    ] as const) {
      const root = mkdtempSync(path.join(tmpdir(), `gitgate-${name}-`));
      const first = await openTrail(root);
      for (let i = 0; i < 3; i++) await first.log.append('s1', decisionEvent(`a${i}`));
      await first.committer.commit();
      await first.log.close();
      const repo = path.join(root, 'audit');
      const storedLines = readFileSync(streamFile(repo, 's1'), 'utf8').trim().split('\n');
      const f = forged(first.key, parseLine(storedLines[2]!).record.prev);
      const hash = leafHashHex(f.line);
      const text = `${hash}\t${parseLine(f.line).record.seq}\t${JSON.stringify(f.stream)}\t${f.line}\n`;
      writeFileSync(
        path.join(root, 'wal', 'wal-100.log'),
        `${text}=\t1\t${createHash('sha256').update(text).digest('hex')}\n`,
      );
      const head = (await gitText(repo, ['rev-parse', 'HEAD'])).trim();
      const second = await openTrail(root, first.key);
      await expect(second.committer.recover(), name).rejects.toThrow(
        name === 'fork' ? /s1: seq 2 is stored with another content/ : /is not a stream name/,
      );
      await second.log.close();
      expect(existsSync(path.join(root, 'wal', 'wal-100.log'))).toBe(true);
      expect(existsSync(path.join(root, 'outside.jsonl'))).toBe(false);
      expect((await gitText(repo, ['rev-parse', 'HEAD'])).trim()).toBe(head);
      expect(readFileSync(streamFile(repo, 's1'), 'utf8').trim().split('\n')).toEqual(storedLines);
    }
  });
});

describe('the audit repo work tree changed while the gateway runs', () => {
  it('a stream file appended to or cut behind its back is never committed as gitgate wrote it; a restart puts it back and commits every record', async () => {
    for (const tamper of ['append', 'truncate'] as const) {
      const root = mkdtempSync(path.join(tmpdir(), `gitgate-worktree-${tamper}-`));
      const repo = path.join(root, 'audit');
      const first = await openTrail(root);
      for (let i = 0; i < 3; i++) await first.log.append('s1', decisionEvent(`a${i}`));
      await first.committer.commit();
      const head = (await gitText(repo, ['rev-parse', 'HEAD'])).trim();
      const file = streamFile(repo, 's1');
      if (tamper === 'append') appendFileSync(file, `${readFileSync(file, 'utf8').split('\n')[0]}\n`);
      else writeFileSync(file, readFileSync(file, 'utf8').split('\n').slice(0, 1).join('\n') + '\n');
      for (let i = 3; i < 5; i++) await first.log.append('s1', decisionEvent(`a${i}`));
      await first.committer.commit();
      expect(first.committer.status().blocked, tamper).toMatch(/changed outside gitgate/);
      expect((await gitText(repo, ['rev-parse', 'HEAD'])).trim()).toBe(head);
      await first.log.close();
      const second = await openTrail(root, first.key);
      await second.committer.recover();
      await second.log.close();
      const report = await verifyRepo(repo);
      expect(report.error, tamper).toBeUndefined();
      expect(report.records).toBe(5);
    }
  });
});

describe('a gateway killed mid-commit', () => {
  it("git's lock files left behind do not keep the next gateway from starting and recovering", async () => {
    const first = await startGateway({
      upstreams: { http: { url: 'http://127.0.0.1:9/unused' } },
      options: { connectUpstream: (cfg) => checkingUpstream(cfg.name, () => undefined) },
    });
    const url = `${first.url}/mcp/http`;
    const token = await first.token('bob');
    const init = await post(url, token, {
      jsonrpc: '2.0',
      id: 0,
      method: 'initialize',
      params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 't', version: '1' } },
    });
    expect(init.status).toBe(200);
    await first.close();
    // What a git killed together with its gateway leaves: its index and ref locks.
    const git = path.join(first.dataDir, 'audit', '.git');
    writeFileSync(path.join(git, 'index.lock'), '');
    writeFileSync(path.join(git, 'refs', 'heads', 'main.lock'), '');
    const second = await startGateway({
      dataDir: first.dataDir,
      upstreams: { http: { url: 'http://127.0.0.1:9/unused' } },
      options: { connectUpstream: (cfg) => checkingUpstream(cfg.name, () => undefined) },
    });
    await second.close();
    expect(existsSync(path.join(git, 'index.lock'))).toBe(false);
    expect((await verifyRepo(path.join(first.dataDir, 'audit'))).ok).toBe(true);
  });

  it('commits are made durable (git fsyncs objects and refs) before the WAL segments holding their records are deleted', async () => {
    const gw = await startGateway({
      upstreams: { http: { url: 'http://127.0.0.1:9/unused' } },
      options: { connectUpstream: (cfg) => checkingUpstream(cfg.name, () => undefined) },
    });
    await gw.close();
    const config = { raw: (args: string[]) => gitText(path.join(gw.dataDir, 'audit'), args) };
    expect((await config.raw(['config', '--get', 'core.fsync'])).trim().split(',').sort()).toEqual([
      'objects',
      'reference',
    ]);
    expect((await config.raw(['config', '--get', 'core.fsyncMethod'])).trim()).toBe('fsync');
  });

  it('those settings are one file .git/config includes last (no git spawn each), so they win over values set above', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'gitgate-audit-settings-'));
    await GitAuditStore.open(dir, 'key');
    // An older gitgate set the same keys one by one; an edit appended after the include is overridden at the next start.
    appendFileSync(path.join(dir, '.git', 'config'), '[core]\n\tlooseCompression = 9\n');
    await GitAuditStore.open(dir, 'key', { exclusive: true });
    await GitAuditStore.open(dir, 'key', { exclusive: true });
    const text = readFileSync(path.join(dir, '.git', 'config'), 'utf8');
    expect(text.split('[include]')).toHaveLength(2);
    expect(text.trimEnd().endsWith('path = gitgate.config')).toBe(true);
    expect((await gitText(dir, ['config', '--get', 'core.looseCompression'])).trim()).toBe('0');
    expect((await gitText(dir, ['config', '--get', 'commit.gpgsign'])).trim()).toBe('false');
  });
});

describe('two gateways on one data dir', () => {
  it('the second refuses to start while the first runs, and starts once it stopped; a lock left by a killed gateway does not stop it', async () => {
    const upstreams = { http: { url: 'http://127.0.0.1:9/unused' } };
    const options = { connectUpstream: (cfg: { name: string }) => checkingUpstream(cfg.name, () => undefined) };
    const first = await startGateway({ upstreams, options });
    await expect(startGateway({ dataDir: first.dataDir, upstreams, options })).rejects.toThrow(
      /data dir .* is in use by another gitgate/,
    );
    // The refused one touched nothing: the first still records and commits.
    const token = await first.token('bob');
    expect(
      (
        await post(`${first.url}/mcp/http`, token, {
          jsonrpc: '2.0',
          id: 0,
          method: 'initialize',
          params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 't', version: '1' } },
        })
      ).status,
    ).toBe(200);
    await first.close();
    const second = await startGateway({ dataDir: first.dataDir, upstreams, options });
    await second.close();
    expect((await verifyRepo(path.join(first.dataDir, 'audit'))).ok).toBe(true);

    // A process that took the lock and was killed (it never released it).
    const holder = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { lockDataDir } from ${JSON.stringify(path.join(packageRoot, 'dist', 'data-dir-lock.js'))}; await lockDataDir(${JSON.stringify(first.dataDir)}); console.log('locked'); setInterval(() => {}, 1000);`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    await waitForOutput(holder, 'locked');
    await expect(startGateway({ dataDir: first.dataDir, upstreams, options })).rejects.toThrow(
      /in use by another gitgate/,
    );
    holder.kill('SIGKILL');
    await once(holder, 'exit');
    const third = await startGateway({ dataDir: first.dataDir, upstreams, options });
    await third.close();
  });
});

async function waitForOutput(child: ChildProcess, text: string): Promise<void> {
  let out = '';
  for await (const chunk of child.stdout!) {
    out += String(chunk);
    if (out.includes(text)) return;
  }
  throw new Error(`child exited before printing ${text}`);
}

const request: JsonRpcRequest = {
  jsonrpc: '2.0',
  id: 1,
  method: 'tools/call',
  params: { name: 'echo', arguments: { message: 'hi' } },
};
const input = {
  identity: { sub: 'ann', groups: [], issuer: 'urn:test' },
  mcp: {
    method: 'tools/call',
    tool: 'echo',
    arguments: { message: 'hi' },
    protocol_version: '2025-11-25',
    era: 'legacy',
  },
  upstream: { name: 'demo', transport: 'http' },
  request: { id: 'r1', time_ns: 1 },
} as unknown as PolicyInput;
const allowed = {
  decision: {
    allow: true,
    valid: true,
    reasons: ['ok'],
    risk: 'low',
    approval: { required: false, approvers: [], min_approvals: 1, ttl_seconds: 900 },
    mask: [],
    maskRules: compileMask([]),
    credential: { ttl_seconds: 60, scopes: [] },
  },
  revision: { commit: null, bundleDigest: 'sha256:x' },
  inputJson: JSON.stringify(input),
} as unknown as DecisionOutcome;
