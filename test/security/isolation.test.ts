/**
 * Class: one caller's state reaching another caller through what gitgate shares. A session-era
 * upstream serves every stateless (2026-07-28) caller over the one session gitgate holds, so what
 * the upstream scopes to "the session" gitgate must scope to the caller. Every test here is an
 * attack that worked against an earlier gitgate; real gateways and upstreams on loopback.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JsonRpcMessage, JsonRpcRequest } from '../../src/mcp/jsonrpc.js';
import { SharedUpstreamSession } from '../../src/mcp/upstream/shared-session.js';
import type { UpstreamConnector } from '../../src/mcp/upstream/types.js';
import { packageRoot } from '../../src/paths.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { makePolicyDir, TEST_POLICY_DATA } from '../helpers/policy.js';
import { modernHeaders } from '../helpers/raw-mcp.js';
import { type Hostile, startHostile } from './hostile-upstream.js';

const MODERN = {
  'io.modelcontextprotocol/protocolVersion': '2026-07-28',
  'io.modelcontextprotocol/clientCapabilities': {},
};

interface Answer {
  result?: Record<string, unknown>;
  error?: { code: number; message: string };
}

describe("a session-era upstream's tasks belong to the caller that started them", () => {
  let gw: TestGateway;
  let upstream: Hostile;
  // The upstream keeps tasks per session, as a session-era server does: here, gitgate's shared session.
  const tasks = new Map<string, unknown>();

  beforeAll(async () => {
    upstream = await startHostile((call, res) => {
      const { msg } = call;
      const json = (m: unknown, status = 200) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(m));
      };
      const id = msg.id;
      if (msg.method === 'server/discover') json({ jsonrpc: '2.0', id, error: { code: -32601, message: 'no' } }, 400);
      else if (msg.method === 'tools/call' && msg.params?.task !== undefined) {
        const taskId = `t${tasks.size + 1}`;
        tasks.set(taskId, { content: [{ type: 'text', text: `for ${JSON.stringify(msg.params.arguments)}` }] });
        json({ jsonrpc: '2.0', id, result: { task: { taskId, status: 'completed', ttl: 60_000 } } });
      } else if (msg.method === 'tasks/list')
        json({
          jsonrpc: '2.0',
          id,
          result: { tasks: [...tasks.keys()].map((t) => ({ taskId: t, status: 'completed' })) },
        });
      else if (msg.method === 'tasks/result' || msg.method === 'tasks/get' || msg.method === 'tasks/cancel')
        json({ jsonrpc: '2.0', id, result: tasks.get(String(msg.params?.taskId)) ?? {} });
      else json({ jsonrpc: '2.0', id, result: {} });
    });
    gw = await startGateway({ upstreams: { http: { url: upstream.url } } });
  });
  afterAll(async () => {
    await gw?.close();
    await upstream?.close();
  });

  const post = async (token: string, method: string, params: Record<string, unknown>, name?: string) => {
    const res = await fetch(`${gw.url}/mcp/http`, {
      method: 'POST',
      headers: modernHeaders(token, method, name),
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params: { ...params, _meta: MODERN } }),
    });
    return (await res.json()) as Answer;
  };

  it('another caller can neither list, read, get nor cancel it; the upstream never hears of the attempt', async () => {
    const alice = await gw.token('alice', ['eng']);
    const bob = await gw.token('bob', ['eng']);
    const started = await post(
      alice,
      'tools/call',
      { name: 'echo', arguments: { mail: 'alice-private' }, task: { ttl: 60_000 } },
      'echo',
    );
    const taskId = (started.result?.task as { taskId?: string } | undefined)?.taskId;
    expect(taskId).toBe('t1');
    // Before: bob's tasks/list showed t1 and his tasks/result read "alice-private".
    expect((await post(bob, 'tasks/list', {})).result?.tasks).toEqual([]);
    const reached = upstream.received.length;
    for (const method of ['tasks/result', 'tasks/get', 'tasks/cancel']) {
      const stolen = await post(bob, method, { taskId }, method === 'tasks/result' ? undefined : taskId);
      expect(stolen.error).toMatchObject({ code: -32602 });
      expect(JSON.stringify(stolen)).not.toContain('alice-private');
    }
    expect(upstream.received.length).toBe(reached);
    // The caller that started it still has it.
    expect((await post(alice, 'tasks/list', {})).result?.tasks).toEqual([{ taskId: 't1', status: 'completed' }]);
    expect(JSON.stringify(await post(alice, 'tasks/result', { taskId }))).toContain('alice-private');
  });
});

describe('what gitgate remembers of whose task is whose is shared fairly', () => {
  it("one caller starting thousands of tasks forgets its own oldest, never another caller's", async () => {
    // An in-memory session-era upstream: every task-augmented call starts a task, every task is readable.
    let n = 0;
    const connector: UpstreamConnector = {
      name: 'mem',
      transport: 'http',
      shutdown: async () => undefined,
      open: async () => ({
        closed: false,
        send: async () => undefined,
        listen: async () => undefined,
        close: async () => undefined,
        async *request(msg: JsonRpcRequest): AsyncGenerator<JsonRpcMessage> {
          if (msg.method === 'initialize')
            yield { jsonrpc: '2.0', id: msg.id, result: { protocolVersion: '2025-11-25', capabilities: {} } };
          else if (msg.method === 'tools/call')
            yield { jsonrpc: '2.0', id: msg.id, result: { task: { taskId: `t${++n}`, status: 'completed' } } };
          else yield { jsonrpc: '2.0', id: msg.id, result: { content: [{ type: 'text', text: 'done' }] } };
        },
      }),
    };
    const shared = new SharedUpstreamSession(connector, { name: 'gitgate', version: '0' });
    const run = async (owner: string, method: string, params: Record<string, unknown>) => {
      const out: JsonRpcMessage[] = [];
      for await (const m of shared.request({ jsonrpc: '2.0', id: 1, method, params }, owner)) out.push(m);
      return out.at(-1) as { result?: { task?: { taskId: string } } };
    };
    const start = (owner: string) => run(owner, 'tools/call', { name: 'echo', arguments: {}, task: {} });
    const alices = (await start('alice')).result!.task!.taskId;
    // Before: past 4096 bindings the oldest went, whoever it was (here: alice's).
    const mallorys: string[] = [];
    for (let i = 0; i < 4200; i++) mallorys.push((await start('mallory')).result!.task!.taskId);
    expect(await run('alice', 'tasks/result', { taskId: alices })).toMatchObject({ result: { content: [{}] } });
    // Mallory's share is what she lost: her oldest, not her newest.
    await expect(run('mallory', 'tasks/result', { taskId: mallorys[0]! })).rejects.toMatchObject({
      code: 'INVALID_PARAMS',
    });
    expect(await run('mallory', 'tasks/result', { taskId: mallorys.at(-1)! })).toMatchObject({
      result: { content: [{}] },
    });
    await shared.close();
  });
});

describe("a stdio upstream's requests reach only the caller they are for", () => {
  let gw: TestGateway;
  const log = path.join(mkdtempSync(path.join(tmpdir(), 'gitgate-sampler-')), 'log');
  beforeAll(async () => {
    writeFileSync(log, '');
    gw = await startGateway({
      upstreams: {
        st: {
          stdio: { command: process.execPath, args: [path.join(packageRoot, 'test/fixtures/stdio-sampler.mjs'), log] },
        },
      },
      policyDir: await makePolicyDir({
        ...TEST_POLICY_DATA,
        upstreams: { ...TEST_POLICY_DATA.upstreams, st: { full_access_groups: ['eng'], credential_ttl_seconds: 60 } },
      }),
    });
  });
  afterAll(() => gw?.close());

  const call = async (token: string, name: string, args: Record<string, unknown>) => {
    const res = await fetch(`${gw.url}/mcp/st`, {
      method: 'POST',
      headers: modernHeaders(token, 'tools/call', name),
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'tools/call',
        params: {
          name,
          arguments: args,
          _meta: { ...MODERN, 'io.modelcontextprotocol/clientCapabilities': { sampling: {} } },
        },
      }),
    });
    return res.text();
  };

  it("a sampling request stdio cannot tie to one caller's call, while two callers' calls are in flight, goes to neither", async () => {
    const alice = await gw.token('alice', ['eng']);
    const bob = await gw.token('bob', ['eng']);
    // Stateless callers of a stdio upstream share its one child; stdio says nothing of which call a request is for.
    const asked = call(alice, 'ask-later', { who: 'alice' });
    await expect.poll(() => readFileSync(log, 'utf8').includes('asked\n'), { timeout: 10_000 }).toBe(true);
    // Bob's call is the newest in flight when the child asks to sample alice's prompt.
    const triggered = await call(bob, 'trigger', {});
    expect(triggered).toContain('triggered');
    expect(triggered).not.toContain('PRIVATE prompt of alice');
    // The child was told gitgate cannot say whose it is; alice's call ends with that, not with bob's answer.
    const answered = await asked;
    expect(answered).toContain(
      'sampling refused: gitgate cannot tell which call this sampling/createMessage belongs to',
    );
    expect(readFileSync(log, 'utf8')).not.toContain('PRIVATE');
  });
});
