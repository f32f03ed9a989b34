import { afterEach, describe, expect, it } from 'vitest';
import { GatewayError } from '../../src/errors.js';
import type { JsonRpcMessage } from '../../src/mcp/jsonrpc.js';
import { type StdioConnector, stdioConnector } from '../../src/mcp/upstream/stdio.js';
import type { UpstreamSession } from '../../src/mcp/upstream/types.js';
import { ManualClock } from '../helpers/clock.js';

// A tiny stdio MCP server: answers by tool name, so each routing rule of the connector is one request.
const CHILD = `
const rl = require('node:readline').createInterface({ input: process.stdin });
const out = (m) => process.stdout.write(JSON.stringify(m) + '\\n');
const waiting = new Map();
rl.on('line', (line) => {
  const m = JSON.parse(line);
  if (m.id !== undefined && m.method === undefined) return waiting.get(m.id)?.(m);
  if (m.method !== 'tools/call') return;
  const name = m.params.name;
  const done = (text) => out({ jsonrpc: '2.0', id: m.id, result: { text } });
  if (name === 'echo') return done(JSON.stringify(m.params._meta ?? null));
  if (name === 'progress') {
    for (let i = 1; i <= 3; i++) out({ jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: m.params._meta.progressToken, progress: i } });
    return done('progressed');
  }
  if (name === 'ask') {
    waiting.set('s1', (r) => done('answered ' + r.result.ok));
    return out({ jsonrpc: '2.0', id: 's1', method: 'sampling/createMessage', params: {} });
  }
  if (name === 'unrelated') {
    out({ jsonrpc: '2.0', method: 'notifications/tools/list_changed' });
    return done('said');
  }
  if (name === 'exit') process.exit(3);
  // 'silent': never answers
});
`;

const cfg = {
  name: 'unit',
  stdio: { command: process.execPath, args: ['-e', CHILD], env: {} },
  audience: 'x',
  timeoutMs: 1_000,
  maxSessions: 1,
  maxSessionsPerCaller: 1,
  idleTimeoutMs: 60_000,
  maxResponseBytes: 1 << 20,
  maxInFlightBytes: 4 << 20,
};
const quiet = { debug: () => undefined, warn: () => undefined };

let connector: StdioConnector | undefined;
afterEach(async () => {
  await connector?.shutdown();
  connector = undefined;
});

const call = (id: number, name: string, meta?: Record<string, unknown>) =>
  ({
    jsonrpc: '2.0',
    id,
    method: 'tools/call',
    params: { name, ...(meta !== undefined ? { _meta: meta } : {}) },
  }) as const;

async function collect(it: AsyncIterable<JsonRpcMessage>): Promise<JsonRpcMessage[]> {
  const out: JsonRpcMessage[] = [];
  for await (const m of it) out.push(m);
  return out;
}

async function openOne(clock = new ManualClock()): Promise<UpstreamSession> {
  connector = stdioConnector(cfg, quiet, clock);
  return connector.open();
}

describe('stdio connector (one child per session)', () => {
  it('routes the response by id and progress by token; a credential in _meta travels with the request', async () => {
    const s = await openOne();
    expect(connector!.liveSessions).toBe(1);
    const echoed = await collect(s.request(call(1, 'echo'), { auth: { headers: {}, meta: { token: 't-1' } } }));
    expect(echoed).toEqual([{ jsonrpc: '2.0', id: 1, result: { text: '{"token":"t-1"}' } }]);
    const progressed = await collect(s.request(call(2, 'progress', { progressToken: 'p' })));
    expect(progressed.map((m) => ('method' in m ? (m.params as { progress: number }).progress : 'done'))).toEqual([
      1,
      2,
      3,
      'done',
    ]);
  });

  it("a server request goes to the newest request in flight, and the caller's answer reaches the child", async () => {
    const s = await openOne();
    const seen: JsonRpcMessage[] = [];
    for await (const m of s.request(call(1, 'ask'))) {
      seen.push(m);
      if ('method' in m) await s.send({ jsonrpc: '2.0', id: 's1', result: { ok: true } });
    }
    expect(seen.map((m) => ('method' in m ? m.method : (m as { result: unknown }).result))).toEqual([
      'sampling/createMessage',
      { text: 'answered true' },
    ]);
  });

  it('a message tied to no request waits in the backlog until a listen stream takes it', async () => {
    const s = await openOne();
    await collect(s.request(call(1, 'unrelated')));
    const ac = new AbortController();
    const stream = await s.listen(ac.signal);
    const it = stream![Symbol.asyncIterator]();
    expect((await it.next()).value).toEqual({ jsonrpc: '2.0', method: 'notifications/tools/list_changed' });
    ac.abort();
    expect((await it.next()).done).toBe(true);
  });

  it('a request id already in flight is refused; an unanswered request times out on the clock', async () => {
    const clock = new ManualClock();
    const s = await openOne(clock);
    await collect(s.request(call(1, 'echo'))); // the child spoke: timeoutMs applies, not the startup allowance
    const silent = s.request(call(2, 'silent'))[Symbol.asyncIterator]();
    const outcome = silent.next().catch((e: unknown) => e);
    await expect(collect(s.request(call(2, 'echo')))).rejects.toThrow(/id 2 is already in flight/);
    clock.advance(cfg.timeoutMs);
    const err = (await outcome) as GatewayError;
    expect(err).toBeInstanceOf(GatewayError);
    expect(err.code).toBe('UPSTREAM_TIMEOUT');
  });

  it("the child's exit fails what is in flight and closes the session; shutdown leaves no child", async () => {
    const s = await openOne();
    await expect(collect(s.request(call(1, 'exit')))).rejects.toThrow(/exited \(code 3\)/);
    expect(s.closed).toBe(true);
    expect(connector!.liveSessions).toBe(0);
    await openOne();
    expect(connector!.liveSessions).toBe(1);
    await connector!.shutdown();
    expect(connector!.liveSessions).toBe(0);
  });
});
