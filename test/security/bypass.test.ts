/**
 * Class: paths that reach an upstream without a decision. Every message a client
 * sends is either refused before the policy, or decided by the policy for exactly
 * what is forwarded; every message a client receives, on any stream, is shaped
 * (masked) by a decision.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readRecords } from '../../src/audit/read.js';
import type { AuditRecord } from '../../src/audit/record.js';
import { FileWal } from '../../src/audit/wal.js';
import type { JsonRpcRequest } from '../../src/mcp/jsonrpc.js';
import { packageRoot } from '../../src/paths.js';
// @ts-expect-error plain JS fixture
import { LEAK_TEXT, startHttpServer } from '../fixtures/demo-server.mjs';
import { verifyRepo } from '../helpers/audit-repo.js';
import { FlakyWal } from '../helpers/flaky-wal.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { makePolicyDir, TEST_POLICY_DATA } from '../helpers/policy.js';
import { modernHeaders, RawMcp, until } from '../helpers/raw-mcp.js';

interface Upstream {
  url: string;
  received: {
    message: Record<string, unknown> & { method?: string; id?: unknown; params?: Record<string, unknown> };
  }[];
  close(): Promise<void>;
}

const LEAKS = ['jane.doe@example.com', 'AKIAIOSFODNN7EXAMPLE'];
const MASK = [
  { path: '$.result', detectors: ['email', 'aws_access_key'] },
  { path: '$.params', detectors: ['email', 'aws_access_key'] },
];

function policyData(over: { protocol_methods?: string[] } = {}) {
  const data = structuredClone(TEST_POLICY_DATA) as typeof TEST_POLICY_DATA & {
    upstreams: Record<string, { mask: unknown; public_tools: string[] }>;
  };
  data.upstreams.http!.mask = MASK;
  data.upstreams.http!.public_tools.push('broadcast', 'touch');
  return { ...data, ...over };
}

const MODERN = {
  'io.modelcontextprotocol/protocolVersion': '2026-07-28',
  'io.modelcontextprotocol/clientInfo': { name: 'raw', version: '1' },
  'io.modelcontextprotocol/clientCapabilities': {},
};

describe('every path to an upstream is decided', () => {
  let upstream: Upstream;
  let gw: TestGateway;
  let url: string;
  const reached = (pred: (m: Upstream['received'][number]['message']) => boolean) =>
    upstream.received.filter((r) => pred(r.message));

  beforeAll(async () => {
    upstream = (await startHttpServer()) as Upstream;
    gw = await startGateway({
      upstreams: { http: { url: upstream.url } },
      policyDir: await makePolicyDir(policyData()),
    });
    url = `${gw.url}/mcp/http`;
  });
  afterAll(async () => {
    await gw.close();
    await upstream.close();
  });

  it('a request sent without an id (as a notification) is refused and never forwarded, whatever its method', async () => {
    const bob = new RawMcp(url, await gw.token('bob'));
    await bob.initialize();
    for (const method of [
      'tools/call',
      'resources/read',
      'prompts/get',
      'initialize',
      'logging/setLevel',
      'tools/list',
      'completion/complete',
      'ping',
      'weird/method',
    ]) {
      const r = await bob.post({
        jsonrpc: '2.0',
        method,
        params: { name: 'get-env', uri: 'test://readme', arguments: {} },
      });
      expect({ method, status: r.status }).toEqual({ method, status: 400 });
      expect(r.messages[0]).toMatchObject({ id: null, error: { code: -32600, data: { gitgate: 'INVALID_REQUEST' } } });
      expect(String((r.messages[0]!.error as { message: string }).message)).toContain('needs an id');
    }
    expect(reached((m) => m.id === undefined && m.method !== 'notifications/initialized')).toEqual([]);
  });

  it('a notification the protocol does not define goes to the policy, which refuses it', async () => {
    const alice = new RawMcp(url, await gw.token('alice', ['eng']));
    await alice.initialize();
    const r = await alice.post({ jsonrpc: '2.0', method: 'notifications/tools/call', params: { name: 'get-env' } });
    expect(r.messages[0]).toMatchObject({
      error: {
        code: -32010,
        data: { gitgate: 'POLICY_DENIED', reasons: ['notification notifications/tools/call is not allowed by policy'] },
      },
    });
    expect(reached((m) => m.method === 'notifications/tools/call')).toEqual([]);
  });

  it('a cancellation must name a request of the caller in flight on that session', async () => {
    const bob = new RawMcp(url, await gw.token('bob'));
    await bob.initialize();
    const r = await bob.post({
      jsonrpc: '2.0',
      method: 'notifications/cancelled',
      params: { requestId: 'nothing-in-flight' },
    });
    expect(r.status).toBe(400);
    expect(JSON.stringify(r.messages[0])).toContain('names no request of yours in flight');
    expect(reached((m) => m.method === 'notifications/cancelled')).toEqual([]);

    // A request really in flight may be cancelled, and the cancellation is forwarded.
    const ctl = new AbortController();
    const hanging = fetch(url, {
      method: 'POST',
      signal: ctl.signal,
      headers: {
        authorization: `Bearer ${bob.token}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-session-id': bob.sessionId!,
        'mcp-protocol-version': '2025-11-25',
      },
      body: JSON.stringify({ jsonrpc: '2.0', id: 'h1', method: 'tools/call', params: { name: 'hang', arguments: {} } }),
    }).catch(() => undefined);
    await until(() => reached((m) => m.id === 'h1').length === 1, 'the hanging call to reach the upstream');
    const ok = await bob.post({
      jsonrpc: '2.0',
      method: 'notifications/cancelled',
      params: { requestId: 'h1', reason: 'changed my mind' },
    });
    expect(ok.status).toBe(202);
    await until(
      () => reached((m) => m.method === 'notifications/cancelled').length === 1,
      'the cancellation to reach the upstream',
    );
    ctl.abort();
    await hanging;
  });

  it("one caller cannot cancel another caller's request (sessions are the caller's own)", async () => {
    const alice = new RawMcp(url, await gw.token('alice', ['eng']));
    await alice.initialize();
    const mallory = new RawMcp(url, await gw.token('mallory'));
    mallory.sessionId = alice.sessionId;
    const r = await mallory.post({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 'x' } });
    expect(r.status).toBe(404);
  });

  it('client progress must carry the token of an upstream request the caller was shown', async () => {
    const bob = new RawMcp(url, await gw.token('bob'));
    await bob.initialize();
    const r = await bob.post({
      jsonrpc: '2.0',
      method: 'notifications/progress',
      params: { progressToken: 'forged', progress: 1 },
    });
    expect(r.status).toBe(400);
    expect(reached((m) => m.method === 'notifications/progress')).toEqual([]);
  });

  it('a response must answer a request the upstream sent on that session, once; and carries no method', async () => {
    const bob = new RawMcp(url, await gw.token('bob'));
    await bob.initialize();
    const forged = await bob.post({
      jsonrpc: '2.0',
      id: 0,
      result: { model: 'm', role: 'assistant', content: { type: 'text', text: 'forged' } },
    });
    expect(forged.status).toBe(400);
    expect(JSON.stringify(forged.messages[0])).toContain('answers no request the upstream sent on this session');
    expect(reached((m) => m.method === undefined && m.id === 0)).toEqual([]);

    // The upstream asks (on the GET stream); the caller answers once; a second answer is refused.
    const seen: Record<string, unknown>[] = [];
    const stream = await bob.listen((m) => seen.push(m));
    expect(stream.status).toBe(200);
    const call = await bob.post({
      jsonrpc: '2.0',
      id: 'b1',
      method: 'tools/call',
      params: { name: 'broadcast', arguments: {} },
    });
    expect(call.status).toBe(200);
    await until(
      () => seen.some((m) => m.method === 'sampling/createMessage'),
      'the sampling request on the GET stream',
    );
    const ask = seen.find((m) => m.method === 'sampling/createMessage')!;
    const answer = {
      jsonrpc: '2.0',
      id: ask.id,
      result: { model: 'm', role: 'assistant', content: { type: 'text', text: 'ok' } },
    };
    // Two answers racing for the one request: one goes on, the other is refused.
    const raced = await Promise.all([bob.post(answer), bob.post(answer)]);
    expect(raced.map((r) => r.status).sort()).toEqual([202, 400]);
    await until(
      () => reached((m) => m.method === undefined && m.id === ask.id).length === 1,
      'the answer to reach the upstream',
    );
    expect((await bob.post(answer)).status).toBe(400);
    expect(reached((m) => m.method === undefined && m.id === ask.id)).toHaveLength(1);
    stream.close();
  });

  it('the GET stream is shaped like a POST stream: server messages on it are masked', async () => {
    const bob = new RawMcp(url, await gw.token('bob'));
    await bob.initialize();
    const seen: Record<string, unknown>[] = [];
    const stream = await bob.listen((m) => seen.push(m));
    await bob.post({ jsonrpc: '2.0', id: 'b2', method: 'tools/call', params: { name: 'broadcast', arguments: {} } });
    await until(
      () =>
        seen.some((m) => m.method === 'notifications/message') &&
        seen.some((m) => m.method === 'sampling/createMessage'),
      'both GET-stream messages',
    );
    stream.close();
    const text = JSON.stringify(seen);
    for (const leak of LEAKS) expect(text).not.toContain(leak);
    expect(text).toContain('[redacted:email]');
    expect(text).toContain('[redacted:aws_access_key]');
    expect(LEAK_TEXT).toContain(LEAKS[0]);
  });

  it('a resource-updated notification reaches only callers who may read that resource', async () => {
    const heard = async (who: RawMcp) => {
      await who.initialize();
      const seen: Record<string, unknown>[] = [];
      const stream = await who.listen((m) => seen.push(m));
      await who.post({ jsonrpc: '2.0', id: 't', method: 'tools/call', params: { name: 'touch', arguments: {} } });
      // The log line is sent after the update: once it is here, the update would have been too.
      await until(() => seen.some((m) => m.method === 'notifications/message'), 'the log line after the update');
      stream.close();
      return seen.map((m) => m.method);
    };
    expect(await heard(new RawMcp(url, await gw.token('alice', ['eng'])))).toEqual([
      'notifications/resources/updated',
      'notifications/message',
    ]);
    expect(await heard(new RawMcp(url, await gw.token('bob')))).toEqual(['notifications/message']);
  });

  it('arguments that are not an object are invalid params: they reach neither the policy nor the upstream nor an approval', async () => {
    const alice = new RawMcp(url, await gw.token('alice', ['eng']));
    await alice.initialize();
    const before = upstream.received.length;
    for (const args of [['rm -rf /'], 'rm -rf /', 42, null, true]) {
      for (const name of ['echo', 'get-env']) {
        const r = await alice.post({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name, arguments: args } });
        expect(r.messages[0]).toMatchObject({ id: 7, error: { code: -32602, data: { gitgate: 'INVALID_PARAMS' } } });
      }
    }
    for (const params of [{}, { name: 42 }, { name: '' }, { name: ['echo'] }]) {
      const r = await alice.post({ jsonrpc: '2.0', id: 8, method: 'tools/call', params });
      expect(r.messages[0]).toMatchObject({ error: { code: -32602 } });
    }
    const r = await alice.post({
      jsonrpc: '2.0',
      id: 9,
      method: 'resources/read',
      params: { uri: { href: 'test://readme' } },
    });
    expect(r.messages[0]).toMatchObject({ error: { code: -32602 } });
    expect(upstream.received.length).toBe(before);
    expect(gw.gw.approvals.list()).toEqual([]);
  });

  it('a name an upstream could read as another (homoglyph, space, NUL, control, too long) or a uri with a control character is refused, not decided', async () => {
    const alice = new RawMcp(url, await gw.token('alice', ['eng']));
    await alice.initialize();
    const before = upstream.received.length;
    const calls: { method: string; params: Record<string, unknown> }[] = [
      ...['get\u2010env', 'get-env ', 'get-env\u0000', ' get-env', 'get-env\n', 'ｇｅｔ-env', 'x'.repeat(129)].map(
        (name) => ({ method: 'tools/call', params: { name, arguments: {} } }),
      ),
      { method: 'prompts/get', params: { name: 'greet\u200b', arguments: {} } },
      { method: 'resources/read', params: { uri: 'test://readme\u001b[2K' } },
      { method: 'resources/subscribe', params: { uri: 'test://readme\r\n' } },
      {
        method: 'completion/complete',
        params: { ref: { type: 'ref/prompt', name: 'greet\t' }, argument: { name: 'n', value: 'v' } },
      },
      // A listen's subscriptions are decided one uri each: any other shape would go undecided.
      {
        method: 'subscriptions/listen',
        params: { notifications: { resourceSubscriptions: { uri: 'test://readme' } } },
      },
      { method: 'subscriptions/listen', params: { notifications: { resourceSubscriptions: [42] } } },
      { method: 'subscriptions/listen', params: { notifications: 'all' } },
    ];
    for (const { method, params } of calls) {
      const r = await alice.post({ jsonrpc: '2.0', id: 'n', method, params });
      expect({ method, params, answer: r.messages[0] }).toMatchObject({
        answer: { error: { code: -32602, data: { gitgate: 'INVALID_PARAMS' } } },
      });
    }
    expect(upstream.received.length).toBe(before);
    // The longest name MCP allows still goes.
    const long = await alice.post({
      jsonrpc: '2.0',
      id: 'l',
      method: 'tools/call',
      params: { name: 'x'.repeat(128), arguments: {} },
    });
    expect(JSON.stringify(long.messages[0])).not.toContain('INVALID_PARAMS');
  });

  it('a session-era call goes upstream without the 2026-07-28 envelope keys the policy and an approval leave out; a progress token is a string or an integer', async () => {
    const alice = new RawMcp(url, await gw.token('alice', ['eng']));
    await alice.initialize();
    const meta = {
      'io.modelcontextprotocol/clientInfo': { name: 'smuggled', note: 'not what anyone decided' },
      'io.modelcontextprotocol/logLevel': 'debug',
      'example.com/trace': 't-1',
      progressToken: 'p-1',
    };
    const before = upstream.received.length;
    const r = await alice.post({
      jsonrpc: '2.0',
      id: 'm',
      method: 'tools/call',
      params: { name: 'echo', arguments: { message: 'x' }, _meta: meta },
    });
    expect(JSON.stringify(r.messages.at(-1))).not.toContain('"error"');
    const sent = upstream.received.slice(before).find((x) => x.message.method === 'tools/call')!.message as {
      params: { _meta?: Record<string, unknown> };
    };
    expect(sent.params._meta).toEqual({ 'example.com/trace': 't-1', progressToken: 'p-1' });
    for (const progressToken of [{ cmd: 'rm -rf /' }, 1.5, null, ['a']]) {
      const bad = await alice.post({
        jsonrpc: '2.0',
        id: 'b',
        method: 'tools/call',
        params: { name: 'echo', arguments: {}, _meta: { progressToken } },
      });
      expect(bad.messages[0]).toMatchObject({ error: { code: -32602, data: { gitgate: 'INVALID_PARAMS' } } });
    }
    const notObject = await alice.post({ jsonrpc: '2.0', id: 'c', method: 'tools/list', params: { _meta: 'x' } });
    expect(notObject.messages[0]).toMatchObject({ error: { code: -32602 } });
    // gitgate's own credential key is never a caller's to fill.
    const forged = await alice.post({
      jsonrpc: '2.0',
      id: 'f',
      method: 'tools/call',
      params: { name: 'echo', arguments: {}, _meta: { 'dev.gitgate/credential': 'eyJhbGciOi.forged.x' } },
    });
    expect(forged.messages[0]).toMatchObject({ error: { code: -32602, data: { gitgate: 'INVALID_PARAMS' } } });
    expect(upstream.received.length).toBe(before + 1);
  });

  it('every params member of a call reaches the policy and the record, or the call is refused', async () => {
    const alice = new RawMcp(url, await gw.token('alice', ['eng']));
    await alice.initialize();
    const before = upstream.received.length;
    for (const params of [
      { name: 'echo', arguments: { message: 'x' }, extraField: 'undecided' },
      { name: 'echo', arguments: { message: 'x' }, task: 'not an object' },
      { uri: 'test://readme', arguments: {} },
    ]) {
      const r = await alice.post({
        jsonrpc: '2.0',
        id: 'p',
        method: params.uri !== undefined ? 'resources/read' : 'tools/call',
        params,
      });
      expect(r.messages[0]).toMatchObject({ error: { code: -32602 } });
    }
    expect(upstream.received.length).toBe(before);
    // _meta (but its progress token) and task are part of what the policy sees, and so of the decision record.
    let seen: Record<string, unknown> | undefined;
    const policy = gw.gw.policy;
    const current = policy.current.bind(policy);
    const spy = {
      current: () => {
        const inst = current();
        if (inst === undefined) return undefined;
        return {
          ...inst,
          evaluateJson: (json: ArrayBuffer) => {
            seen = (JSON.parse(new TextDecoder().decode(json)) as { mcp: Record<string, unknown> }).mcp;
            return inst.evaluateJson(json);
          },
        };
      },
    };
    Object.assign(policy, spy);
    try {
      await alice.post({
        jsonrpc: '2.0',
        id: 'q',
        method: 'tools/call',
        params: {
          name: 'echo',
          arguments: { message: 'm' },
          task: { ttl: 1000 },
          _meta: { progressToken: 'p1', 'com.example/target': 'prod' },
        },
      });
    } finally {
      Object.assign(policy, { current });
    }
    expect(seen).toMatchObject({ tool: 'echo', task: { ttl: 1000 }, meta: { 'com.example/target': 'prod' } });
    expect(seen?.meta).not.toHaveProperty('progressToken');
  });

  it('completion/complete is decided on what it completes (the prompt or resource), not waved through', async () => {
    const bob = new RawMcp(url, await gw.token('bob'));
    await bob.initialize();
    const complete = (ref: unknown) =>
      bob.post({
        jsonrpc: '2.0',
        id: 'c',
        method: 'completion/complete',
        params: { ref, argument: { name: 'name', value: 'A' } },
      });
    const denied = await complete({ type: 'ref/prompt', name: 'greet' });
    expect(denied.messages[0]).toMatchObject({
      error: {
        code: -32010,
        data: { reasons: ['completion/complete denied: bob (groups: []) is not in a full-access group'] },
      },
    });
    for (const ref of [
      undefined,
      'greet',
      { type: 'ref/prompt' },
      { type: 'ref/other', name: 'greet' },
      { type: 'ref/resource', uri: 7 },
    ]) {
      expect((await complete(ref)).messages[0]).toMatchObject({ error: { code: -32602 } });
    }
    expect(reached((m) => m.method === 'completion/complete')).toEqual([]);
  });

  it('a stateless (2026-07-28) caller cannot send methods that change the upstream session all stateless callers share', async () => {
    const bob = new RawMcp(url, await gw.token('bob'));
    const callers = (m: Upstream['received'][number]['message']) =>
      (m.method === 'initialize' && (m.params?.clientInfo as { name?: string } | undefined)?.name === 'x') ||
      m.method === 'logging/setLevel' ||
      m.method === 'resources/subscribe';
    const before = reached(callers).length;
    for (const [method, params] of [
      ['initialize', { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'x', version: '1' } }],
      ['logging/setLevel', { level: 'debug' }],
      ['resources/subscribe', { uri: 'test://readme' }],
    ] as const) {
      const r = await bob.post(
        { jsonrpc: '2.0', id: 3, method, params: { ...params, _meta: MODERN } },
        { 'mcp-protocol-version': '2026-07-28', 'mcp-method': method },
      );
      expect(r.messages[0]).toMatchObject({ id: 3, error: { code: -32601, data: { gitgate: 'METHOD_NOT_FOUND' } } });
    }
    // gitgate's own initialize of the shared session may have happened; no caller's did.
    expect(reached(callers).length).toBe(before);
  });

  it('a stateless caller may not answer or notify anything but cancel its own requests', async () => {
    const bob = new RawMcp(url, await gw.token('bob'));
    const h = { 'mcp-protocol-version': '2026-07-28' };
    const answer = await bob.post({ jsonrpc: '2.0', id: 1, result: {} }, h);
    expect(answer.status).toBe(400);
    const cancel = await bob.post(
      { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 1, _meta: MODERN } },
      h,
    );
    expect(cancel.status).toBe(400);
    const roots = await bob.post(
      { jsonrpc: '2.0', method: 'notifications/roots/list_changed', params: { _meta: MODERN } },
      h,
    );
    expect(roots.status).toBe(400);
  });
});

describe('a GET stream is decided', () => {
  it('a policy that does not allow subscriptions/listen opens no stream', async () => {
    const upstream = (await startHttpServer()) as Upstream;
    const listenless = policyData({
      protocol_methods: TEST_POLICY_DATA.protocol_methods.filter((m) => m !== 'subscriptions/listen'),
    });
    const gw = await startGateway({
      upstreams: { http: { url: upstream.url } },
      policyDir: await makePolicyDir(listenless),
    });
    try {
      const bob = new RawMcp(`${gw.url}/mcp/http`, await gw.token('bob'));
      await bob.initialize();
      const stream = await bob.listen(() => undefined);
      expect(stream.body[0]).toMatchObject({
        error: {
          code: -32010,
          data: {
            reasons: ['method subscriptions/listen is not known to this policy: no rule names it, so it is refused'],
          },
        },
      });
      expect(upstream.received.filter((r) => r.message.method === undefined && r.message.id === undefined)).toEqual([]);
    } finally {
      await gw.close();
      await upstream.close();
    }
  });
});

describe('what goes upstream is on the record, beside the policy input', () => {
  it('params the policy input does not carry (a task id, a completion argument, a log level) are recorded with the decision, masked', async () => {
    const upstream = (await startHttpServer()) as Upstream;
    const gw = await startGateway({
      upstreams: { http: { url: upstream.url } },
      policyDir: await makePolicyDir(policyData()),
    });
    const alice = new RawMcp(`${gw.url}/mcp/http`, await gw.token('alice', ['eng']));
    try {
      await alice.initialize();
      await alice.post({ jsonrpc: '2.0', id: 1, method: 'tasks/cancel', params: { taskId: 'TASK-4242' } });
      await alice.post({
        jsonrpc: '2.0',
        id: 2,
        method: 'completion/complete',
        params: {
          ref: { type: 'ref/prompt', name: 'greet' },
          argument: { name: 'who', value: 'ARGVALUE-9999' },
          context: { arguments: { token: 'ghp_abcdefghijklmnopqrstuvwxyz0123456789' } },
        },
      });
      await alice.post({ jsonrpc: '2.0', id: 3, method: 'logging/setLevel', params: { level: 'debug' } });
    } finally {
      await gw.close();
      await upstream.close();
    }
    const params = new Map<string, unknown>();
    for await (const r of readRecords(path.join(gw.dataDir, 'audit')) as AsyncIterable<AuditRecord>)
      if (r.type === 'decision' && r.method !== undefined)
        params.set(r.method, (r.data as { params?: unknown }).params);
    expect(params.get('tasks/cancel')).toEqual({ taskId: 'TASK-4242' });
    expect(params.get('completion/complete')).toEqual({
      argument: { name: 'who', value: 'ARGVALUE-9999' },
      context: { arguments: { token: '[redacted:github_token]' } },
    });
    expect(params.get('logging/setLevel')).toEqual({ level: 'debug' });
  });
});

describe('every message a caller receives or sends on, whatever the stream, is recorded', () => {
  it("GET-stream messages, POST-stream progress and the client's answers are in the audit trail, masked", async () => {
    const upstream = (await startHttpServer()) as Upstream;
    const gw = await startGateway({
      upstreams: { http: { url: upstream.url } },
      policyDir: await makePolicyDir(policyData()),
    });
    const bob = new RawMcp(`${gw.url}/mcp/http`, await gw.token('bob'));
    try {
      await bob.initialize();
      const seen: Record<string, unknown>[] = [];
      const stream = await bob.listen((m) => seen.push(m));
      await bob.post({ jsonrpc: '2.0', id: 'b', method: 'tools/call', params: { name: 'broadcast', arguments: {} } });
      await until(() => seen.some((m) => m.method === 'sampling/createMessage'), 'the sampling request');
      const ask = seen.find((m) => m.method === 'sampling/createMessage')!;
      const answered = await bob.post({
        jsonrpc: '2.0',
        id: ask.id,
        result: { model: 'm', role: 'assistant', content: { type: 'text', text: 'write to ann@example.com' } },
      });
      expect(answered.status).toBe(202);
      const slow = await bob.post({
        jsonrpc: '2.0',
        id: 's',
        method: 'tools/call',
        params: { name: 'slow', arguments: { steps: 2 }, _meta: { progressToken: 'p' } },
      });
      expect(slow.messages.map((m) => m.method ?? 'answer')).toEqual([
        'notifications/progress',
        'notifications/progress',
        'answer',
      ]);
      stream.close();
    } finally {
      await gw.close();
      await upstream.close();
    }
    const repo = path.join(gw.dataDir, 'audit');
    expect(await verifyRepo(repo)).toMatchObject({ ok: true });
    const records: AuditRecord[] = [];
    for await (const r of readRecords(repo, { session: bob.sessionId! })) records.push(r);
    const messages = records
      .filter((r) => r.type === 'message')
      .map((r) => (r.data as { message: { method?: string } }).message);
    expect(messages.map((m) => m.method)).toEqual([
      'notifications/message',
      'sampling/createMessage',
      'notifications/progress',
      'notifications/progress',
    ]);
    const text = JSON.stringify(records);
    for (const leak of [...LEAKS, 'ann@example.com']) expect(text).not.toContain(leak);
    const answer = records.find(
      (r) =>
        r.type === 'decision' && (r.data as { input?: { mcp?: { kind?: string } } }).input?.mcp?.kind === 'response',
    )!;
    expect(answer.data).toMatchObject({
      allow: true,
      input: { mcp: { method: 'sampling/createMessage' } },
      message: { result: { content: { text: 'write to [redacted:email]' } } },
    });
  });
});

describe('a session ends on the record', () => {
  it("a DELETE of someone else's session is refused on the record, like a POST or GET would be", async () => {
    const upstream = (await startHttpServer()) as Upstream;
    const gw = await startGateway({ upstreams: { http: { url: upstream.url } } });
    try {
      const bob = new RawMcp(`${gw.url}/mcp/http`, await gw.token('bob'));
      await bob.initialize();
      const res = await fetch(`${gw.url}/mcp/http`, {
        method: 'DELETE',
        headers: {
          authorization: `Bearer ${await gw.token('mallory')}`,
          'mcp-session-id': bob.sessionId!,
          'mcp-protocol-version': '2025-11-25',
        },
      });
      expect(res.status).toBe(404);
    } finally {
      await gw.close();
      await upstream.close();
    }
    const refused: unknown[] = [];
    for await (const r of readRecords(path.join(gw.dataDir, 'audit')) as AsyncIterable<AuditRecord>)
      if (r.type === 'error' && r.caller?.sub === 'mallory') refused.push(r.data);
    expect(refused).toEqual([expect.objectContaining({ code: 'SESSION_UNKNOWN', http_status: 404 })]);
  });

  it('DELETE answers 204 only once its session.close is durable: a close that cannot be recorded is not acknowledged', async () => {
    const upstream = (await startHttpServer()) as Upstream;
    let wal!: FlakyWal;
    const gw = await startGateway({
      upstreams: { http: { url: upstream.url } },
      options: { wal: (dir) => (wal = new FlakyWal(new FileWal(dir))) },
    });
    try {
      const del = async (who: RawMcp) =>
        fetch(`${gw.url}/mcp/http`, {
          method: 'DELETE',
          headers: {
            authorization: `Bearer ${who.token}`,
            'mcp-session-id': who.sessionId!,
            'mcp-protocol-version': '2025-11-25',
          },
        });
      const bob = new RawMcp(`${gw.url}/mcp/http`, await gw.token('bob'));
      await bob.initialize();
      expect((await del(bob)).status).toBe(204);
      const carol = new RawMcp(`${gw.url}/mcp/http`, await gw.token('carol'));
      await carol.initialize();
      wal.failing = true;
      const res = await del(carol);
      expect(res.status).toBe(503);
      expect(await res.json()).toMatchObject({ error: { data: { gitgate: 'AUDIT_UNAVAILABLE' } } });
    } finally {
      wal.failing = false;
      await gw.close();
      await upstream.close();
    }
  });
});

describe('a message is what its members say, nothing more', () => {
  it('a request carrying result or error, or any member JSON-RPC does not define, is refused', async () => {
    const upstream = (await startHttpServer()) as Upstream;
    const gw = await startGateway({ upstreams: { http: { url: upstream.url } } });
    try {
      const alice = new RawMcp(`${gw.url}/mcp/http`, await gw.token('alice', ['eng']));
      await alice.initialize();
      const before = upstream.received.length;
      for (const m of [
        { jsonrpc: '2.0', id: 0, method: 'tools/list', result: { content: [] } },
        { jsonrpc: '2.0', id: 0, method: 'tools/list', error: { code: 1, message: 'x' } },
        { jsonrpc: '2.0', id: 0, method: 'tools/list', extra: 'AKIAIOSFODNN7EXAMPLE' },
        { jsonrpc: '2.0', id: 0, result: {}, method2: 'x' },
      ]) {
        const r = await alice.post(m);
        expect(r.status).toBe(400);
        expect(r.messages[0]).toMatchObject({ error: { code: -32600 } });
      }
      expect(upstream.received.length).toBe(before);
    } finally {
      await gw.close();
      await upstream.close();
    }
  });
});

describe('an input-required retry is decided on what the upstream goes on with', () => {
  it('a retry that changes the arguments of the held call is refused: the upstream would go on with the first ones', async () => {
    const upstream = (await startHttpServer()) as Upstream;
    const gw = await startGateway({ upstreams: { http: { url: upstream.url } } });
    try {
      const alice = new RawMcp(`${gw.url}/mcp/http`, await gw.token('alice', ['eng']));
      const h = { 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/call', 'mcp-name': 'ask-llm' };
      const ask = (prompt: string, retry: Record<string, unknown> = {}) =>
        alice.post(
          {
            jsonrpc: '2.0',
            id: 1,
            method: 'tools/call',
            params: {
              name: 'ask-llm',
              arguments: { prompt },
              _meta: { ...MODERN, 'io.modelcontextprotocol/clientCapabilities': { sampling: {} } },
              ...retry,
            },
          },
          h,
        );
      const first = (await ask('harmless')).messages.at(-1) as { result?: { requestState?: string } };
      const requestState = first.result?.requestState;
      expect(requestState).toBeTypeOf('string');
      const retry = {
        requestState,
        inputResponses: { upstream_request: { role: 'assistant', content: { type: 'text', text: 'X' }, model: 'm' } },
      };
      // Before: decided (and recorded) as a call with these arguments, while the upstream ran "harmless".
      const changed = await ask('something else entirely', retry);
      expect(changed.messages.at(-1)).toMatchObject({ error: { code: -32602 } });
      // The held call is still the caller's to answer, with its own arguments.
      expect((await ask('harmless', retry)).messages.at(-1)).toMatchObject({
        result: { content: [{ type: 'text', text: 'model said: X' }] },
      });
    } finally {
      await gw.close();
      await upstream.close();
    }
  });
});

describe("a 2026 listen's resource subscriptions are decided", () => {
  it('each is what resources/subscribe of its uri would be: a caller who may not subscribe asks the upstream for none', async () => {
    const listens: unknown[] = [];
    const upstream = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        const msg = JSON.parse(body || '{}') as JsonRpcRequest;
        res.writeHead(200, { 'content-type': 'application/json' });
        if (msg.method === 'subscriptions/listen') listens.push(msg.params?.notifications);
        res.end(
          JSON.stringify({
            jsonrpc: '2.0',
            id: msg.id,
            result: msg.method === 'server/discover' ? { supportedVersions: ['2026-07-28'], capabilities: {} } : {},
          }),
        );
      });
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    // The default policy: anyone may listen for list changes; resources/subscribe is full access (group eng).
    const gw = await startGateway({
      policyDir: path.join(packageRoot, 'policies'),
      upstreams: { demo: { url: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/mcp` } },
    });
    const listen = (token: string) =>
      fetch(`${gw.url}/mcp/demo`, {
        method: 'POST',
        headers: modernHeaders(token, 'subscriptions/listen'),
        body: JSON.stringify({
          jsonrpc: '2.0',
          id: 1,
          method: 'subscriptions/listen',
          params: {
            notifications: { toolsListChanged: true, resourceSubscriptions: ['file:///etc/shadow'] },
            _meta: {
              'io.modelcontextprotocol/protocolVersion': '2026-07-28',
              'io.modelcontextprotocol/clientCapabilities': {},
            },
          },
        }),
      }).then((r) => r.text());
    try {
      await listen(await gw.token('bob'));
      expect(listens.at(-1)).toEqual({ toolsListChanged: true, resourceSubscriptions: [] });
      await listen(await gw.token('alice', ['eng']));
      expect(listens.at(-1)).toEqual({ toolsListChanged: true, resourceSubscriptions: ['file:///etc/shadow'] });
    } finally {
      await gw.close();
      upstream.closeAllConnections();
      await new Promise((r) => upstream.close(r));
    }
  });
});
