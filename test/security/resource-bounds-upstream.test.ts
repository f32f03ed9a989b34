import type http from 'node:http';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { UpstreamConfig } from '../../src/config/types.js';
import { GatewayError } from '../../src/errors.js';
import { fitStructuredContent } from '../../src/masking/structured.js';
import type { JsonRpcMessage } from '../../src/mcp/jsonrpc.js';
import { httpConnector } from '../../src/mcp/upstream/http.js';
import { SharedUpstreamSession } from '../../src/mcp/upstream/shared-session.js';
import { stdioConnector } from '../../src/mcp/upstream/stdio.js';
import type { UpstreamConnector, UpstreamSession } from '../../src/mcp/upstream/types.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { makePolicyDir, TEST_POLICY_DATA } from '../helpers/policy.js';
import { type Hostile, mcpSession, type Received, startHostile, writeForever } from './hostile-upstream.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const CAP = 1 * MiB;
const STDIO_FIXTURE = path.resolve(import.meta.dirname, '../fixtures/hostile-stdio.mjs');

/** How each tools/call of the hostile upstream is answered, by tool name. */
const attacks = new Map<string, (call: Received, res: http.ServerResponse) => void | Promise<void>>();
const outcomes: Record<string, { sent: number; peerClosed: boolean }> = {};

const sseHead = (res: http.ServerResponse) => res.writeHead(200, { 'content-type': 'text/event-stream' });
const jsonStart = (id: unknown) =>
  `{"jsonrpc":"2.0","id":${JSON.stringify(id)},"result":{"content":[{"type":"text","text":"`;

/**
 * Upstreams that answer with more than gitgate should read: each is cut off at
 * its cap with a clear error and its connection destroyed, and the gateway goes
 * on answering (health endpoints included).
 */
describe('unbounded upstream answers are refused at their caps', () => {
  let hostile: Hostile;
  let gw: TestGateway;
  let token: string;

  beforeAll(async () => {
    hostile = await startHostile(async (call, res) => {
      const attack = attacks.get(String(call.msg.params?.name));
      if (attack === undefined) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({ jsonrpc: '2.0', id: call.msg.id, result: { content: [{ type: 'text', text: 'fine' }] } }),
        );
        return;
      }
      await attack(call, res);
    });
    const data = structuredClone(TEST_POLICY_DATA) as { upstreams: Record<string, unknown> };
    data.upstreams.hostile = data.upstreams.http;
    data.upstreams.child = data.upstreams.http;
    gw = await startGateway({
      policyDir: await makePolicyDir(data),
      upstreams: {
        hostile: { url: hostile.url, maxResponseBytes: CAP, maxInFlightBytes: 3 * MiB },
        child: { stdio: { command: process.execPath, args: [STDIO_FIXTURE] }, maxResponseBytes: CAP },
      },
    });
    token = await gw.token('alice', ['eng']);
  });
  afterAll(async () => {
    await gw?.close();
    await hostile?.close();
  });

  const expectTooLarge = (last: { error?: { message: string; data?: { gitgate?: string } } } | undefined) => {
    expect(last?.error?.data?.gitgate).toBe('UPSTREAM_TOO_LARGE');
  };

  it('an SSE data line that never ends fails at the cap and the upstream connection is destroyed (it was re-searched on every chunk)', async () => {
    attacks.set('endless-sse-line', async (_call, res) => {
      sseHead(res);
      res.write('data: ');
      outcomes['endless-sse-line'] = await writeForever(res, Buffer.alloc(64 * KiB, 'a'), 256 * MiB);
    });
    const s = await mcpSession(gw.url, 'hostile', token);
    const r = await s.call('endless-sse-line');
    expectTooLarge(r.last);
    expect(r.last?.error?.message).toMatch(/line over 1048576 bytes/);
    await vi.waitUntil(() => outcomes['endless-sse-line'] !== undefined, { timeout: 20_000 });
    expect(outcomes['endless-sse-line']!.peerClosed).toBe(true);
    // The cap plus what the sockets buffered, not the 256 MiB the upstream would have sent.
    expect(outcomes['endless-sse-line']!.sent).toBeLessThan(32 * MiB);
  });

  it('an SSE event of many lines is capped as a whole', async () => {
    attacks.set('endless-sse-event', async (_call, res) => {
      sseHead(res);
      outcomes['endless-sse-event'] = await writeForever(res, `data: ${'b'.repeat(1000)}\n`, 256 * MiB);
    });
    const r = await (await mcpSession(gw.url, 'hostile', token)).call('endless-sse-event');
    expectTooLarge(r.last);
    expect(r.last?.error?.message).toMatch(/event over 1048576 bytes/);
    await vi.waitUntil(() => outcomes['endless-sse-event'] !== undefined, { timeout: 20_000 });
    expect(outcomes['endless-sse-event']!.peerClosed).toBe(true);
  });

  it('a JSON answer whose Content-Length is over the cap is refused before it is read', async () => {
    attacks.set('declared-huge', async (call, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(60 * MiB) });
      res.write(jsonStart(call.msg.id));
      outcomes['declared-huge'] = await writeForever(res, Buffer.alloc(64 * KiB, 'c'), 60 * MiB - 100);
    });
    const r = await (await mcpSession(gw.url, 'hostile', token)).call('declared-huge');
    expectTooLarge(r.last);
    expect(r.last?.error?.message).toMatch(/answered with 62914560 bytes, over its maxResponseBytes/);
    await vi.waitUntil(() => outcomes['declared-huge'] !== undefined, { timeout: 20_000 });
    expect(outcomes['declared-huge']!.peerClosed).toBe(true);
  });

  it('four concurrent chunked 60 MiB JSON answers are each cut at the cap, and /readyz answers', async () => {
    let n = 0;
    attacks.set('chunked-huge', async (call, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write(jsonStart(call.msg.id));
      outcomes[`chunked-huge-${n++}`] = await writeForever(res, Buffer.alloc(64 * KiB, 'd'), 60 * MiB);
    });
    const s = await mcpSession(gw.url, 'hostile', token);
    const answers = await Promise.all([1, 2, 3, 4].map(() => s.call('chunked-huge')));
    for (const r of answers) expectTooLarge(r.last);
    const ready = await fetch(`${gw.url}/readyz`);
    expect(ready.status).toBe(200);
    await vi.waitUntil(() => Object.keys(outcomes).filter((k) => k.startsWith('chunked-huge-')).length === 4, {
      timeout: 20_000,
    });
    for (let i = 0; i < 4; i++) expect(outcomes[`chunked-huge-${i}`]!.sent).toBeLessThan(32 * MiB);
  });

  it.each(['json', 'sse'])(
    '%s answers in flight together are bounded by maxInFlightBytes; the others complete',
    async (kind) => {
      const open: { res: http.ServerResponse; closed: boolean }[] = [];
      let release: () => void = () => undefined;
      const allSent = new Promise<void>((r) => (release = r));
      attacks.set(`held-${kind}`, async (call, res) => {
        res.writeHead(200, { 'content-type': kind === 'sse' ? 'text/event-stream' : 'application/json' });
        const entry = { res, closed: false };
        res.on('close', () => (entry.closed = !res.writableFinished));
        open.push(entry);
        res.write(`${kind === 'sse' ? 'data: ' : ''}${jsonStart(call.msg.id)}${'h'.repeat(900 * KiB)}`);
        if (open.length === 4) release();
        await allSent;
        // Wait until gitgate has given up one of the four (3.6 MiB > 3 MiB in flight), then finish the rest.
        await vi.waitUntil(() => open.some((o) => o.closed), { timeout: 20_000 });
        if (!entry.closed) res.end(`"}]}}${kind === 'sse' ? '\n\n' : ''}`);
      });
      const s = await mcpSession(gw.url, 'hostile', token);
      const answers = await Promise.all([1, 2, 3, 4].map(() => s.call(`held-${kind}`)));
      const refused = answers.filter((r) => r.last?.error !== undefined);
      expect(refused.length).toBeGreaterThanOrEqual(1);
      for (const r of refused) expect(r.last?.error?.message).toMatch(/maxInFlightBytes/);
      expect(answers.filter((r) => r.last?.result !== undefined).length).toBeGreaterThanOrEqual(1);
    },
  );

  it('JSON nested 100,000 deep is refused as a protocol error before it is parsed (it overflowed the stack in masking)', async () => {
    const deep = (id: unknown) =>
      `{"jsonrpc":"2.0","id":${JSON.stringify(id)},"result":{"content":${'['.repeat(100_000)}${']'.repeat(100_000)}}}`;
    attacks.set('deep-json', (call, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(deep(call.msg.id));
    });
    attacks.set('deep-sse', (call, res) => {
      sseHead(res);
      res.end(`data: ${deep(call.msg.id)}\n\n`);
    });
    const s = await mcpSession(gw.url, 'hostile', token);
    for (const tool of ['deep-json', 'deep-sse']) {
      const r = await s.call(tool);
      expect(r.last?.error?.data?.gitgate, tool).toBe('UPSTREAM_PROTOCOL');
      expect(r.last?.error?.message).toMatch(/nested deeper than 512 levels/);
    }
    expect((await s.call('fine')).last?.result).toEqual({ content: [{ type: 'text', text: 'fine' }] });
  });

  it('a stdio line that never ends ends the session with UPSTREAM_TOO_LARGE (readline buffered it whole)', async () => {
    const s = await mcpSession(gw.url, 'child', token);
    const r = await s.call('endless-line', { mib: 256 });
    expectTooLarge(r.last);
    expect(r.last?.error?.message).toMatch(/line over 1048576 bytes/);
  });

  it('a stdio child flooding stderr is read in bounded lines and still answers', async () => {
    const s = await mcpSession(gw.url, 'child', token);
    const r = await s.call('stderr-flood', { mib: 8 });
    expect(r.last?.result).toEqual({ content: [{ type: 'text', text: 'still here' }] });
  });
});

const cfgFor = (url: string, extra: Partial<UpstreamConfig> = {}): UpstreamConfig & { url: string } => ({
  name: 'slow',
  url,
  audience: url,
  timeoutMs: 60_000,
  maxSessions: 10,
  maxSessionsPerCaller: 10,
  idleTimeoutMs: 60_000,
  maxResponseBytes: CAP,
  maxInFlightBytes: 4 * CAP,
  ...extra,
});

/**
 * Upstreams that hold a request open with bytes that never make a message. The
 * deadline (timeoutMs) is for the next message, so only gitgate's timer decides:
 * the clock is faked, the sockets are real.
 */
describe('a request is not held open by bytes that make no message', () => {
  let hostile: Hostile;
  const pending: http.ServerResponse[] = [];
  let step: (res: http.ServerResponse) => void = () => undefined;
  beforeAll(async () => {
    hostile = await startHostile((call, res) => {
      pending.push(res);
      const name = String(call.msg.params?.name);
      if (name === 'keepalives') {
        sseHead(res);
        step = (r) => r.write(': keepalive\n\n');
      } else if (name === 'dribble') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.write(jsonStart(call.msg.id));
        step = (r) => r.write('x');
      } else step = () => undefined; // 'silent': never sends headers
    });
  });
  afterEach(() => {
    vi.useRealTimers();
    for (const r of pending.splice(0)) r.destroy();
  });
  afterAll(() => hostile.close());

  for (const tool of ['keepalives', 'dribble', 'silent']) {
    it(`${tool}: UPSTREAM_TIMEOUT once timeoutMs passes without a message`, async () => {
      vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
      const connector = httpConnector(cfgFor(hostile.url));
      const session = await connector.open();
      const it = session
        .request({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: tool } })
        [Symbol.asyncIterator]();
      let outcome: unknown;
      const next = it.next().then(
        (v) => (outcome = v),
        (err: unknown) => (outcome = err),
      );
      // The upstream has the request before the clock moves (real I/O turns; only timers are fake).
      for (let k = 0; k < 100_000 && pending.length === 0; k++) await new Promise((r) => setImmediate(r));
      expect(pending).toHaveLength(1);
      // Then, between fake-clock steps, it sends its bytes that make no message.
      for (let round = 0; round < 40 && outcome === undefined; round++) {
        for (let k = 0; k < 5; k++) await new Promise((r) => setImmediate(r));
        const res = pending.at(-1);
        if (res !== undefined && !res.destroyed) step(res);
        await vi.advanceTimersByTimeAsync(5_000);
      }
      await Promise.race([next, Promise.resolve()]);
      expect(outcome).toBeInstanceOf(GatewayError);
      expect((outcome as GatewayError).code).toBe('UPSTREAM_TIMEOUT');
      expect((outcome as GatewayError).message).toMatch(/did not answer within 60000 ms/);
      await connector.shutdown();
    });
  }
});

describe('a stdio child flooding a request with notifications', () => {
  it('is read as fast as the caller takes them (stdout pauses past 256 unread), and nothing is lost', async () => {
    const connector = stdioConnector(
      {
        name: 'flood',
        stdio: { command: process.execPath, args: [STDIO_FIXTURE], env: {} },
        audience: 'x',
        timeoutMs: 60_000,
        maxSessions: 1,
        maxSessionsPerCaller: 1,
        idleTimeoutMs: 60_000,
        maxResponseBytes: MiB,
        maxInFlightBytes: 4 * MiB,
      },
      { debug: () => undefined, warn: () => undefined },
    );
    const session = await connector.open();
    let progress = 0;
    let last: JsonRpcMessage | undefined;
    for await (const m of session.request({
      jsonrpc: '2.0',
      id: 1,
      method: 'tools/call',
      params: { name: 'flood-progress', arguments: { count: 5000 }, _meta: { progressToken: 'p' } },
    })) {
      if ('method' in m) expect((m.params as { progress: number }).progress).toBe(++progress);
      else last = m;
      // A slow caller: the child runs ahead only as far as the pipe and the high-water mark let it.
      if (progress % 100 === 0) await new Promise((r) => setImmediate(r));
    }
    expect(progress).toBe(5000);
    expect(last).toEqual({ jsonrpc: '2.0', id: 1, result: { content: [{ type: 'text', text: 'sent 5000' }] } });
    await connector.shutdown();
  });
});

describe('stdio lines that are not messages', () => {
  it('a line nested 100,000 deep is dropped with a warning, and the session goes on', async () => {
    const warnings: string[] = [];
    const connector = stdioConnector(
      {
        name: 'deep',
        stdio: { command: process.execPath, args: [STDIO_FIXTURE], env: {} },
        audience: 'x',
        timeoutMs: 60_000,
        maxSessions: 1,
        maxSessionsPerCaller: 1,
        idleTimeoutMs: 60_000,
        maxResponseBytes: 4 * MiB,
        maxInFlightBytes: 8 * MiB,
      },
      { debug: () => undefined, warn: (_o, msg) => warnings.push(msg) },
    );
    const session = await connector.open();
    const collect = async (id: number, name: string) => {
      const out: JsonRpcMessage[] = [];
      for await (const m of session.request({ jsonrpc: '2.0', id, method: 'tools/call', params: { name } }))
        out.push(m);
      return out;
    };
    await collect(0, 'init-free');
    void collect(1, 'deep').catch(() => undefined);
    await vi.waitUntil(() => warnings.length > 0, { timeout: 20_000 });
    expect(warnings[0]).toMatch(/nested deeper than 512 levels/);
    expect(await collect(2, 'after')).toEqual([
      { jsonrpc: '2.0', id: 2, result: { content: [{ type: 'text', text: 'called after' }] } },
    ]);
    await connector.shutdown();
  });
});

describe('a list page of half a million items', () => {
  it('is refused before the policy is asked about each item (a decision each, on the event loop)', async () => {
    let n = 10;
    const hostile = await startHostile(() => undefined, {
      tools: () => Array.from({ length: n }, (_, i) => ({ name: `t${i}` })),
    });
    const data = structuredClone(TEST_POLICY_DATA) as { upstreams: Record<string, unknown> };
    data.upstreams.lists = data.upstreams.http;
    const gw = await startGateway({ policyDir: await makePolicyDir(data), upstreams: { lists: { url: hostile.url } } });
    try {
      const s = await mcpSession(gw.url, 'lists', await gw.token('bob'));
      expect((await s.list()).last?.result).toEqual({ tools: [] });
      n = 500_000;
      const r = await s.list();
      expect(r.last?.error?.data?.gitgate).toBe('UPSTREAM_TOO_LARGE');
      expect(r.last?.error?.message).toMatch(/lists 500000 items in one page; gitgate takes at most 10000/);
    } finally {
      await gw.close();
      await hostile.close();
    }
  });
});

/** Output schemas are the upstream's too: validating masked structured content against them stays bounded. */
describe('upstream output schemas', () => {
  it('a catastrophic pattern runs on RE2, not the backtracking engine', () => {
    const schema = { type: 'object', properties: { v: { type: 'string', pattern: '^(a+)+$' } }, required: ['v'] };
    const result: Record<string, unknown> = { content: [], structuredContent: { v: `${'a'.repeat(64)}!` } };
    expect(fitStructuredContent(result, schema)).toBe(true);
    expect(result.structuredContent).toBeUndefined();
  });

  it('a schema asking for 2^32 - 1 items or a gigabyte string gets no placeholder of that size', () => {
    for (const member of [
      { type: 'array', minItems: 4_294_967_295 },
      { type: 'string', minLength: 1_000_000_000 },
    ]) {
      const schema = { type: 'object', properties: { x: member }, required: ['x'] };
      const result: Record<string, unknown> = {
        content: [],
        structuredContent: { x: member.type === 'array' ? [] : '' },
      };
      expect(fitStructuredContent(result, schema)).toBe(true);
      expect(result.structuredContent).toBeUndefined();
    }
  });
});

describe('server requests on a stateless response stream', () => {
  it('each is refused with a signed answer, so past 16 the stream is a protocol error, not an amplifier', async () => {
    const sent: JsonRpcMessage[] = [];
    const connector: UpstreamConnector = {
      name: 'chatty',
      transport: 'http',
      shutdown: async () => undefined,
      open: async (): Promise<UpstreamSession> => ({
        closed: false,
        async *request(msg) {
          if (msg.method === 'initialize') {
            yield { jsonrpc: '2.0', id: msg.id, result: { protocolVersion: '2025-11-25', capabilities: {} } };
            return;
          }
          for (let i = 0; i < 100_000; i++)
            yield { jsonrpc: '2.0', id: `s${i}`, method: 'sampling/createMessage', params: {} };
          yield { jsonrpc: '2.0', id: msg.id, result: {} };
        },
        send: async (m) => void sent.push(m),
        listen: async () => undefined,
        close: async () => undefined,
      }),
    };
    const shared = new SharedUpstreamSession(connector, { name: 'gitgate', version: '0' });
    let err: unknown;
    try {
      for await (const m of shared.request(
        { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'x' } },
        'alice',
      ))
        void m;
    } catch (e) {
      err = e;
    }
    expect((err as GatewayError).code).toBe('UPSTREAM_PROTOCOL');
    expect((err as GatewayError).message).toMatch(/more than 16 requests on a stateless response stream/);
    expect(sent.filter((m) => 'error' in m)).toHaveLength(16);
  });
});
